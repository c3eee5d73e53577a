"""Collaborative methods: one file each, registered here by name."""

from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.methods.dml import DML
from analysis.methods.independent import Independent
from analysis.registry import Registry

METHODS = Registry("method")
METHODS.register("independent")(Independent)
METHODS.register("dml")(DML)
# -- more methods: one import + one register line each, below this marker --
from analysis.methods.cl_ilr import CLILR  # noqa: E402
METHODS.register("cl_ilr")(CLILR)
from analysis.methods.one import ONE  # noqa: E402
METHODS.register("one")(ONE)
from analysis.methods.mcl_okd import MCLOKD  # noqa: E402
METHODS.register("mcl_okd")(MCLOKD)
from analysis.methods.divide_cotrain import DivideCotrain  # noqa: E402
METHODS.register("divide_cotrain")(DivideCotrain)
from analysis.methods.od_cheap import ODCheap  # noqa: E402
METHODS.register("od_cheap")(ODCheap)
from analysis.methods.intra_cl import IntraCL  # noqa: E402
METHODS.register("intra_cl")(IntraCL)
from analysis.methods.joint_decision import JointDecision  # noqa: E402
METHODS.register("joint_decision")(JointDecision)


def create_method(options: MethodOptions) -> Method:
    """Instantiate the method named by ``options.name`` with those options."""
    return METHODS.get(options.name)(options)


__all__ = [
    "METHODS",
    "DML",
    "DataShape",
    "Independent",
    "LossParts",
    "Method",
    "MethodOptions",
    "create_method",
    "peer_cross_entropy",
]
