"""What a conclusion is and which report section it belongs to: shared by the sentence builders
(conclude.py for the grid, robust.py for blur mixtures) so neither has to import the other."""

from __future__ import annotations

from dataclasses import dataclass, field

from hwclf.report.experiment import Experiment

SECTIONS = ("Best architecture", "What the Squeeze-and-Excitation block changes", "What training on blur recovers", "Transfer between blur levels",
            "Is one robust model enough?", "Where accuracy falls below half of clean", "Letters", "Writers",
            "Partial results")
S_BEST, S_SE, S_RECOVERY, S_TRANSFER, S_ROBUST, S_HALF, S_LETTERS, S_WRITERS, S_PARTIAL = SECTIONS


def section_title(section: str, exp: Experiment) -> str:
    """Headings as the reader's data calls its classes: "Letters", "Digits" or "Classes"."""
    return exp.class_nouns[1].capitalize() if section == S_LETTERS else section


@dataclass
class Conclusion:
    section: str
    text: str
    label: str = ""  # short name used by the partial-results sentence
    cells: set = field(default_factory=set)  # {(arch, train blur)}
    partial: bool = False
