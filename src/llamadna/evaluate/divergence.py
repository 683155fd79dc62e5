# TEMPORARY shim for a run started before the move (not committed)
from llamadna.data.mutate import *  # noqa
from llamadna.data.mutate import mutate_nested, row_seed, DIVERGENCE_RATES  # noqa
