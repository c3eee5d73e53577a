"""Collaborative methods: one file each, registered here by name."""

from analysis.methods.base import DataShape, LossParts, Method, MethodOptions, peer_cross_entropy
from analysis.methods.dml import DML
from analysis.methods.independent import Independent
from analysis.registry import Registry

METHODS = Registry("method")
METHODS.register("independent")(Independent)
METHODS.register("dml")(DML)
# -- more methods: one import + one register line each, below this marker --
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
