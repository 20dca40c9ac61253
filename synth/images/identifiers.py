"""DICOM attributes that identify a person, a visit or a place, and so must never be a label.

A label is written into every synthetic file (and the report), so labelling by PatientID would
publish the protected identifiers. Neither pydicom nor highdicom ships the de-identification
profile as data, so the list below is taken by hand from DICOM PS3.15 Annex E, Table E.1-1
(Basic Application Level Confidentiality Profile): the attributes it removes or replaces that a
label could plausibly be drawn from. Besides the list, every person name (VR PN) and every date
or date-time (VR DA, DT) is refused: a name is an identifier, a date pins down a visit.
Descriptors a label is meant for (BodyPartExamined, Modality, SeriesDescription, ...) pass.
This module imports nothing heavy: `synth.config` uses it when a job spec is read.
"""

from __future__ import annotations

IDENTIFYING_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # The patient: identifiers, names, birth, contact, insurance
        "PatientID",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "IssuerOfPatientID",
        "PatientName",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientMotherBirthName",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "MedicalRecordLocator",
        "MilitaryRank",
        "BranchOfService",
        "PatientInsurancePlanCodeSequence",
        "InsurancePlanIdentification",
        "PatientReligiousPreference",
        "ResponsiblePerson",
        "ResponsibleOrganization",
        "PatientComments",
        "AdditionalPatientHistory",
        # The visit: accession, study and admission identifiers
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "IssuerOfAdmissionID",
        "RequestedProcedureID",
        "PerformedProcedureStepID",
        "ScheduledProcedureStepID",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
        "StudyTime",
        "SeriesTime",
        "AcquisitionTime",
        "ContentTime",
        "InstanceCreationTime",
        # Instance identifiers: each names one patient's study, series or image
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "MediaStorageSOPInstanceUID",
        "FrameOfReferenceUID",
        "SynchronizationFrameOfReferenceUID",
        "IrradiationEventUID",
        "StorageMediaFileSetUID",
        "ReferencedSOPInstanceUID",
        # The place and the people who imaged the patient
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "ReferringPhysicianName",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "PerformingPhysicianName",
        "PhysiciansOfRecord",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "RequestingPhysician",
    }
)
_IDENTIFYING_VRS = {"PN": "a person's name", "DA": "a date", "DT": "a date and time"}


def identifying_reason(keyword: str) -> str | None:
    """Why the attribute identifies someone (for the error line), or None when it does not."""
    if keyword in IDENTIFYING_ATTRIBUTES:
        return "it identifies a patient, a visit or the people and place that imaged them"
    from pydicom.datadict import dictionary_VR, tag_for_keyword  # only when a label is set

    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    what = _IDENTIFYING_VRS.get(dictionary_VR(tag))
    return f"it holds {what}, which identifies a person or a visit" if what else None
