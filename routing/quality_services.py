"""The only writer of shadow evaluation's verdict rows (routing.quality_models)."""

from routing.quality_models import QualityEvaluation


def quality_evaluation_record(**fields) -> QualityEvaluation:
    """Store one shadow evaluation (or return the one already stored for its request)."""
    evaluation, _ = QualityEvaluation.objects.get_or_create(
        request_id=fields.pop("request_id"), defaults=fields
    )
    return evaluation
