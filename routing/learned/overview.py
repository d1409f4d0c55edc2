"""What admin shows of the router models: the artifact in use, the ones on disk, and any
problem. A selector: it reads the policy and the artifacts' cards, and writes nothing."""

from decimal import Decimal

from routing.learned.model import load_router
from routing.learned.runtime import (
    artifact_path,
    available_artifacts,
    current_artifact_id,
    router_status,
)
from routing.models import PolicyVersion
from routing.selectors import policy_get


def router_overview() -> dict:
    """Return what admin shows: the artifact in use, the ones on disk, and any problem."""
    policy = policy_get()
    in_use = policy.router_artifact
    trial = policy.trial_router.artifact_id if policy.trial_router else ""
    latest = PolicyVersion.objects.filter(pk=policy.version).first()
    named = latest.snapshot.get("router", {}) if latest else {}
    problem = ""
    if policy.router is None:
        problem = (
            "The learned router is not loaded: requests are classified by keywords "
            f"(classifier:fallback). {router_status(current_artifact_id())}"
        )
    elif named.get("artifact") and named["artifact"] != in_use:
        problem = (
            f"Policy version {policy.version} names router {named['artifact']}, which does not "
            f"load ({router_status(named['artifact'])}); {in_use} decides instead."
        )
    elif named.get("trial") and Decimal(named.get("trial_percent", "0")) > 0 and not trial:
        problem = f"The trial router {named['trial']} does not load: no trial runs."
    artifacts = []
    for artifact_id in available_artifacts():
        card = (
            load_router(str(artifact_path(artifact_id))).card
            if not router_status(artifact_id)
            else {}
        )
        artifacts.append(
            {
                "id": artifact_id,
                "in_use": artifact_id == in_use,
                "trial_percent": policy.trial_router_percent if artifact_id == trial else None,
                "current": artifact_id == current_artifact_id(),
                "trained_at": card.get("trained_at", ""),
                "metrics": card.get("held_out_metrics", {}),
                "problem": router_status(artifact_id),
            }
        )
    return {"in_use": in_use, "trial": trial, "artifacts": artifacts, "problem": problem}
