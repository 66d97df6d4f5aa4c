"""The pipeline's stages: business logic over batches, with no Kafka and no Ray in sight."""

from pipeline.stages.base import BatchState, Emission, Stage
from pipeline.stages.feedback import FeedbackStage
from pipeline.stages.intake import IntakeStage
from pipeline.stages.playbook import PlaybookStage
from pipeline.stages.policy import PolicyStage
from pipeline.stages.sla_monitor import SlaMonitor
from pipeline.stages.tool import ToolStage
from pipeline.stages.triage import TriageStage

STAGE_CLASSES: dict[str, type[Stage]] = {
    stage.name: stage for stage in (IntakeStage, TriageStage, PolicyStage, PlaybookStage, ToolStage, FeedbackStage)
}

__all__ = [
    "STAGE_CLASSES",
    "BatchState",
    "Emission",
    "FeedbackStage",
    "IntakeStage",
    "PlaybookStage",
    "PolicyStage",
    "SlaMonitor",
    "Stage",
    "ToolStage",
    "TriageStage",
]
