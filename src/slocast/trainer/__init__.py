"""Continuous training: durable ingest, background retraining, gating, bundle publishing."""

from slocast.trainer.service import GateDecision, Trainer, TrainerConfig, gate

__all__ = ["GateDecision", "Trainer", "TrainerConfig", "gate"]
