# Merge operators (lsmkv/core/merge.pyx): what folds a key's merge operands
# (KIND_MERGE entries) with its base value.

cdef class MergeOperator:
    cdef public str name              # recorded in the DB (MERGE_OPERATOR, docs/format.md)
    cdef readonly bint builtin        # one of the named built-ins (runs in a compaction worker)
    cdef public bint can_partial      # partial_merge() combines operands without a base
    cpdef bytes full_merge(self, bytes key, object existing, list operands)
    cpdef object partial_merge(self, bytes key, list operands)
