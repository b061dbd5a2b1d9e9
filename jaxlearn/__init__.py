__version__ = "0.1.0"

# flax 0.12.8: nnx's Module metaclass annotates `__call__` with the bare name `Any`, which
# flax.nnx.pytreelib never imports, so `inspect.signature(..., eval_str=True)` on any nnx.Module
# (nbdev's show_doc, Quarto API pages) raises NameError. Supplying the name fixes the docs build.
try:
    import typing as _typing
    import flax.nnx.pytreelib as _pytreelib
    _pytreelib.__dict__.setdefault("Any", _typing.Any)
except ImportError:  # another flax layout: nothing to patch
    pass
