"""Milk colour and consistency from a camera on a sample cup or sight glass:
white balance from a reference card (``balance``), find and measure the milk
(``features``), classify it (``classify.MilkClassifier``)."""

from agent.vision.milk.classify import (
    MODEL_NAME,
    MilkClassifier,
    MilkModelUnavailable,
    MilkResult,
    open_milk_runner,
)

__all__ = ["MODEL_NAME", "MilkClassifier", "MilkModelUnavailable", "MilkResult",
           "open_milk_runner"]
