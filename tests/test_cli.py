"""The `keramic` console command."""

from keramic import cli


def test_version_prints_the_package_version(capsys):
    assert cli.main(["version"]) == 0
    import keramic

    assert capsys.readouterr().out.strip() == keramic.__version__


def test_demo_runs_the_tutorial(capsys):
    assert cli.main(["demo", "--epochs", "1"]) == 0
    assert "test accuracy" in capsys.readouterr().out
