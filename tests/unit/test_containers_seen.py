"""The Docker target's side of replacement (preflight/containers.py, lab/docker_plan.py): the
engine's list of containers as lab/replacement.py sees it, and the plan carrying a trigger on
each container, as a label it can read back."""

from __future__ import annotations

from lab.config import load_config
from lab.docker_plan import containers, plan_docker, with_triggers
from lab.names import STUDENT_LABEL, TRIGGER_LABEL
from lab.replacement import Seen
from lab.topology import build_topology
from preflight.containers import read_containers, seen_containers


def listed(name: str, state: str, trigger: str | None = None) -> dict[str, object]:
    labels = {STUDENT_LABEL: "dev"} | ({TRIGGER_LABEL: trigger} if trigger else {})
    return {"Id": f"id-{name}", "Names": [f"/{name}"], "State": state, "Labels": labels}


def test_running_containers_are_healthy_and_stopped_ones_failed() -> None:
    seen = seen_containers(
        [
            listed("dev-front", "running", "t1"),
            listed("dev-sum", "exited", "t2"),
            listed("dev-sub", "created"),
            listed("dev-mul", "dead"),
            listed("dev-div", "restarting", "t5"),
            listed("dev-gone", "removing", "t6"),
        ]
    )
    assert seen == {
        "dev-front": (Seen("id-dev-front", False, "t1"),),
        "dev-sum": (Seen("id-dev-sum", True, "t2"),),
        "dev-sub": (Seen("id-dev-sub", True, None),),
        "dev-mul": (Seen("id-dev-mul", True, None),),
        "dev-div": (Seen("id-dev-div", False, "t5"),),
    }


def test_an_engine_this_cannot_read_is_said_so() -> None:
    assert read_containers("ssh://user@host", "dev") is None


def test_each_container_carries_its_trigger_as_a_label() -> None:
    config = load_config({"target": "docker", "topology": "client"}, "dev")
    plan = plan_docker(config, build_topology(config))
    names = [spec.name for spec in containers(plan)]
    assert names == ["dev-inter-router", "dev-front", "dev-sum", "dev-sub", "dev-mul", "dev-div"]
    triggered = with_triggers(plan, {name: f"t-{name}" for name in names})
    for spec in containers(triggered):
        assert spec.replacement_trigger == f"t-{spec.name}"
        assert spec.labels[TRIGGER_LABEL] == f"t-{spec.name}"
        assert spec.labels[STUDENT_LABEL] == "dev"
    assert all(spec.replacement_trigger is None for spec in containers(plan))
