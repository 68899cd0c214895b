"""Layer 5: mmengine components (algorithms, data, evaluation, hooks).

Nothing here registers itself: ``rankssl.registry`` (layer 6) registers these classes in
the ``rankssl`` scope. Import submodules directly (``rankssl.mm.algorithms`` ...);
this package's import stays cheap.
"""
