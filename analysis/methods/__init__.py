"""Collaborative methods: one file each, registered here by name."""

from analysis.methods.base import (
    Collective,
    DataShape,
    LossParts,
    Method,
    MethodOptions,
    peer_cross_entropy,
)
from analysis.methods.cl_ilr import CLILR
from analysis.methods.divide_cotrain import DivideCotrain
from analysis.methods.dml import DML
from analysis.methods.independent import Independent
from analysis.methods.intra_cl import IntraCL
from analysis.methods.joint_decision import JointDecision
from analysis.methods.mcl_okd import MCLOKD
from analysis.methods.od_cheap import ODCheap
from analysis.methods.one import ONE
from analysis.registry import Registry

METHODS = Registry("method")
for _name, _cls in (
    ("independent", Independent),
    ("dml", DML),
    ("divide_cotrain", DivideCotrain),
    ("od_cheap", ODCheap),
    ("cl_ilr", CLILR),
    ("one", ONE),
    ("mcl_okd", MCLOKD),
    ("intra_cl", IntraCL),
    ("joint_decision", JointDecision),
):
    METHODS.register(_name)(_cls)


def create_method(options: MethodOptions) -> Method:
    """Instantiate the method named by ``options.name`` with those options."""
    return METHODS.get(options.name)(options)


__all__ = [
    "Collective",
    "DML",
    "METHODS",
    "DataShape",
    "Independent",
    "LossParts",
    "Method",
    "MethodOptions",
    "create_method",
    "peer_cross_entropy",
]
