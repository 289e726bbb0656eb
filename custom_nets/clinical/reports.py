"""The report sentence from the study itself: the text of a DICOM Structured Report's Findings or Impression.

A radiology report stored in the PACS is a Basic Text, Enhanced or Comprehensive SR (PS3.3 A.35). Its content
tree (``ContentSequence``) holds TEXT items, usually inside section CONTAINERs named from CID 7001 "Diagnostic
Imaging Report Headings" (TID 2000, PS3.16): Findings are (DCM 121070) "Findings" or (LN 59776-5) "Procedure
Findings", each finding (DCM 121071) "Finding"; Impressions are (DCM 121072) "Impressions" or (LN 19005-8),
each (DCM 121073) "Impression". A TEXT item belongs to Findings (Impression) when its own concept or one of its
containers' concepts is one of these codes, or is named so in another coding scheme (code meaning "Finding(s)"
or "Impression(s)", any case). The Findings text is used when there is any, else the Impression text; several
items are joined in document order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from custom_nets.text.prompts import clean_sentence

#: Basic Text, Enhanced, Comprehensive, Comprehensive 3D and Extensible SR Storage (PS3.4 B.5)
REPORT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}
FINDINGS = {("DCM", "121070"), ("DCM", "121071"), ("LN", "59776-5"), ("LN", "18782-3")}
IMPRESSION = {("DCM", "121072"), ("DCM", "121073"), ("LN", "19005-8")}
SECTIONS = {"Findings": (FINDINGS, {"finding", "findings"}), "Impression": (IMPRESSION, {"impression", "impressions"})}


@dataclass(frozen=True)
class Report:
    """The sentence a study's SR gives: ``text``, the ``section`` it came from, and the SR instance it is in."""

    study_uid: str
    sop_instance_uid: str
    section: str  # "Findings" or "Impression"
    text: str
    written: str = ""  # ContentDate + ContentTime: the newest report of a study wins

    @property
    def source(self) -> str:
        """How the manifest names this sentence's source."""
        return f"report: SR {self.sop_instance_uid} ({self.section})"


def is_report(ds) -> bool:
    """A structured report (its SOP class, or modality SR when the class is missing), which holds no pixels."""
    sop_class = str(getattr(ds, "SOPClassUID", ""))
    return sop_class in REPORT_SOP_CLASSES or (not sop_class and str(getattr(ds, "Modality", "")) == "SR")


def _concept(item) -> tuple[tuple[str, str], str]:
    names = getattr(item, "ConceptNameCodeSequence", None) or []
    if not names:
        return ("", ""), ""
    code = names[0]
    return (str(getattr(code, "CodingSchemeDesignator", "")), str(getattr(code, "CodeValue", ""))), \
        str(getattr(code, "CodeMeaning", "")).strip().lower()


def _section_of(item) -> str | None:
    code, meaning = _concept(item)
    return next((name for name, (codes, meanings) in SECTIONS.items() if code in codes or meaning in meanings), None)


def _texts(items: Iterable, section: str | None) -> Iterator[tuple[str, str]]:
    """``(section, text)`` of every TEXT item, depth first in document order; ``section`` is inherited from containers."""
    for item in items or []:
        here = _section_of(item) or section
        if str(getattr(item, "ValueType", "")) == "TEXT" and here:
            yield here, str(getattr(item, "TextValue", ""))
        yield from _texts(getattr(item, "ContentSequence", None), here)


def report_of(ds) -> Report | None:
    """The Findings (else Impression) text of an SR dataset; None when it has neither (or is no SR)."""
    if not is_report(ds):
        return None
    found: dict[str, list[str]] = {"Findings": [], "Impression": []}
    for section, text in _texts([ds], None):
        text = clean_sentence(text)
        if text:
            found[section].append(text)
    section = "Findings" if found["Findings"] else "Impression" if found["Impression"] else None
    if section is None:
        return None
    written = f"{getattr(ds, 'ContentDate', '')}{getattr(ds, 'ContentTime', '')}"
    return Report(str(getattr(ds, "StudyInstanceUID", "")), str(getattr(ds, "SOPInstanceUID", "")), section,
                  " ".join(found[section]), written)


def newest_reports(reports: Iterable[Report]) -> dict[str, Report]:
    """``study UID -> Report``: per study the newest (ContentDate/Time; ties: the larger SOP Instance UID, for a
    stable choice)."""
    out: dict[str, Report] = {}
    for r in reports:
        best = out.get(r.study_uid)
        if best is None or (r.written, r.sop_instance_uid) > (best.written, best.sop_instance_uid):
            out[r.study_uid] = r
    return out
