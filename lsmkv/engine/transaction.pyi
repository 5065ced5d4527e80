# Types of lsmkv.Transaction: compiled in lsmkv/core/txn.pxi, typed in lsmkv/core/dbcore.pyi,
# exported by lsmkv/engine/transaction.py; made by DB.transaction().
from lsmkv.core.dbcore import Transaction as Transaction
from lsmkv.core.dbcore import TransactionIterator as TransactionIterator
