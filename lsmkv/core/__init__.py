"""The compiled core: the per-operation paths and the on-disk formats, in Cython."""
