"""`plot_model` / `model_to_dot`: a model's layer graph drawn with pydot and graphviz."""


def _pydot():
    try:
        import pydot
    except ImportError:
        raise ImportError(
            "plot_model and model_to_dot need pydot and graphviz: `pip install pydot` and install graphviz "
            "(https://graphviz.gitlab.io/download/)."
        ) from None
    return pydot


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB", expand_nested=False,
                 dpi=200, subgraph=False, show_layer_activations=False, show_trainable=False, splines="ortho", **kwargs):
    """A `pydot.Dot` graph with one node per layer and an edge per connection."""
    pydot = _pydot()
    dot = pydot.Dot(graph_type="digraph", rankdir=rankdir, dpi=dpi, splines=splines)
    layers = list(getattr(model, "_graph_layers", None) or model.layers)
    for layer in layers:
        label = f"{layer.name} ({type(layer).__name__})" if show_layer_names else type(layer).__name__
        if show_layer_activations and getattr(layer, "activation", None) is not None:
            label += f"\nactivation: {getattr(layer.activation, '__name__', layer.activation)}"
        if show_trainable:
            label += f"\ntrainable: {layer.trainable}"
        if show_shapes:
            try:
                label += f"\noutput: {layer.output.shape}"
            except (AttributeError, ValueError):
                pass
        if show_dtype:
            label += f"\ndtype: {getattr(layer, 'dtype', None)}"
        dot.add_node(pydot.Node(str(id(layer)), label=label, shape="record"))
    for layer in layers:
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in node.input_tensors:
                parent = tensor._keras_history[0]
                if parent in layers:
                    dot.add_edge(pydot.Edge(str(id(parent)), str(id(layer))))
    if not any(getattr(layer, "_inbound_nodes", None) for layer in layers):  # Sequential: a chain
        for before, after in zip(layers, layers[1:]):
            dot.add_edge(pydot.Edge(str(id(before)), str(id(after))))
    return dot


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=False, rankdir="TB",
               expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False, splines="ortho", **kwargs):
    """Write the layer graph to `to_file` (format from its extension) with graphviz."""
    dot = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                       rankdir=rankdir, expand_nested=expand_nested, dpi=dpi,
                       show_layer_activations=show_layer_activations, show_trainable=show_trainable, splines=splines)
    extension = str(to_file).rsplit(".", 1)[-1] if "." in str(to_file) else "png"
    try:
        dot.write(to_file, format=extension)
    except FileNotFoundError:
        raise ImportError("plot_model needs the graphviz `dot` program on PATH (install graphviz).") from None
    return None
