"""Config <-> object: the registry of public and custom names, safe mode, restore hooks.

Sits below layers and models (which register themselves here) and beside `keramic.saving`, which
uses it for every format; it imports neither.
"""
