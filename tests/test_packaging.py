"""pyproject.toml is the single source of dependencies; environment.yml must agree with it."""

from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["dev"])
    wanted |= set(extras["timm"]) | set(extras["tensorboard"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {req for req in pip_section if not req.startswith("-e")}
    assert listed == wanted, (
        f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    )


def test_torch_requirement_admits_the_tested_release():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch>") or d.startswith("torch="))
    assert "<2.15" in torch_req, "keep torch capped at the tested 2.14 series"


def test_ci_calls_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in ci and "make test" in readme


def test_make_install_and_ci_install_the_optional_timm_and_tensorboard():
    """timm and tensorboard are optional for users but tested in CI: `make install` (run by
    .ci/run) installs them."""
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -e '.[dev,timm,tensorboard]'" in makefile
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci and "make lint" in ci
