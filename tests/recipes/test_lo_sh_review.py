"""The review of the public LO and SH elements Table E.1-1 does not list, as ``hipaa-safe-harbor`` and
``research`` (1.2) treat them: codes, terms and technical values kept by name, identifiers removed by name,
and every other one cleaned by the recipes' ``vr: LO`` and ``vr: SH`` rules (names, labels, descriptions,
comments).

Basic keeps such elements as they are, at every depth. The recipes' keyword rules are the deliberate keeps and
removals; :data:`CLEANED` below is the review of the rest. An LO or SH element a newer data dictionary adds
is in neither, and fails here until someone decides what it can hold: a keep or remove rule in both recipes,
or an entry in :data:`CLEANED`. What the core then does to planted values is in ``test_hipaa_safe_harbor.py``.
"""

from __future__ import annotations

import pytest
from pydicom.datadict import DicomDictionary, RepeatersDictionary

from veil.core.dictionary import dictionary_entry
from veil.core.plan import Action, Plan
from veil.recipes import compile_recipe

RECIPES = ("hipaa-safe-harbor", "research")
TEXT_VRS = ("LO", "SH")
# Command (0000) and File Meta (0002) elements: not in a data set's rules (the core rebuilds the File Meta).
SKIP_GROUPS = (0x0000, 0x0002)

# Unlisted LO and SH elements that may hold what someone typed (a name, a label, a description, a comment, an
# issuer, an ID of a patient-made accessory) and whose value still means something once names, numbers and
# dates are taken out: cleaned by the vr rules. Reviewed for 1.2 against pydicom 3.0.2's dictionary.
CLEANED = frozenset(
    {
        # (0008,xxxx)
        "StageName", "ViewName", "EventTimerNames",
        # (0010,xxxx)
        "StrainSource", "PatientSpeciesDescription", "PatientBreedDescription",
        # (0012,xxxx)
        "DeidentificationMethod",
        # (0014,xxxx)
        "DataElementName", "DataElementDescription", "IndicationLabel", "PropertyLabel", "WedgeName",
        "WedgeDescription",
        # (0018,xxxx)
        "CollimatorGridName", "FrameLabelVector", "DisplayWindowLabelVector", "TargetLabel", "TransducerData",
        "PostprocessingFunction", "AcquisitionProtocolName", "FieldOfViewDescription", "AlgorithmDescription",
        "ReconstructionDescription", "ReferenceLocationLabel", "InstructionText", "ProtocolElementName",
        # (0020,xxxx)
        "Reference", "OriginalImageIdentificationNomenclature", "FrameLabel",
        # (0022,xxxx)
        "IOLFormulaDetail", "LensStatusDescription", "VitreousStatusDescription", "LensConstantDescription",
        "OphthalmicAxialLengthDataSourceDescription", "OphthalmicAxialLengthQualityMetricTypeDescription",
        "OphthalmicImageTypeDescription",
        # (0024,xxxx)
        "PatientReliabilityIndicator", "AlgorithmSource", "DataSetSource", "DataSetDescription",
        # (0028,xxxx)
        "ManipulatedImage", "CompressionOriginator", "PixelSpacingCalibrationDescription",
        "FrameOfInterestDescription", "DisplaySubsystemName", "DisplaySubsystemDescription",
        "SystemStatusComment", "ConfigurationName", "ConfigurationDescription",
        "LuminanceResponseDescription", "TestResultComment",
        # (0038,xxxx)
        "RouteOfAdmissions", "ResourceDescription",
        # (0040,xxxx)
        "PerformedProcedureTypeDescription", "RequestedProcedureDescriptionTrial",
        "MeasurementPrecisionDescriptionTrial", "SequencingIndicatorTrial", "CompletionFlagDescription",
        # (0044,xxxx)
        "SubstanceAdministrationNotes",
        # (0046,xxxx)
        "LensDescription", "OptotypeDetailedDefinition",
        # (0050,xxxx)
        "ContainerComponentDescription",
        # (0054,xxxx)
        "ImageID",
        # (0062,xxxx)
        "SegmentLabel", "SegmentAlgorithmName",
        # (0066,xxxx)
        "SurfaceProcessingDescription", "AlgorithmName", "TrackSetLabel",
        # (0068,xxxx)
        "HPGLDocumentLabel", "HPGLPenLabel", "SurfaceModelLabel", "MatingFeatureSetLabel",
        "PlanningLandmarkDescription",
        # (0070,xxxx)
        "GraphicLayerDescription", "ContentDescription", "GraphicGroupLabel", "TickLabel",
        "RGBATransferFunctionDescription",
        # (0072,xxxx)
        "HangingProtocolName", "HangingProtocolDescription", "HangingProtocolUserGroupName", "ImageSetLabel",
        "DisplaySetLabel", "DisplaySetPresentationGroupDescription",
        # (0074,xxxx)
        "WorklistLabel", "ProcedureStepLabel", "ProcedureStepRelationshipType",
        "ReasonForChannelOmissionDescription",
        # (0076,xxxx)
        "ImplantAssemblyTemplateName", "ImplantAssemblyTemplateIssuer", "SurgicalTechnique",
        # (0078,xxxx)
        "ImplantTemplateGroupName", "ImplantTemplateGroupIssuer",
        "ImplantTemplateGroupVariationDimensionName",
        # (0080,xxxx)
        "TextureLabel",
        # (0082,xxxx)
        "AssessmentSetID", "AssessmentLabel",
        # (2000,xxxx)
        "FilmSessionLabel",
        # (3002,xxxx)
        "RTImageLabel", "RTImageName",
        # (3004,xxxx)
        "DoseComment",
        # (3006,xxxx)
        "FrameOfReferenceTransformationComment",
        # (300A,xxxx)
        "TreatmentProtocols", "ToleranceTableLabel", "BeamName", "BolusID", "CompensatorID",
        "CompensatorTrayID", "BlockTrayID", "BlockName", "ApplicatorDescription", "PatientSetupLabel",
        "PatientAdditionalPosition", "FixationDeviceLabel", "ShieldingDeviceLabel", "SetupDeviceLabel",
        "SourceDescription", "ApplicationSetupName", "TemplateType", "TemplateName",
        "BrachyAccessoryDeviceID", "BrachyAccessoryDeviceName", "SourceApplicatorID", "SourceApplicatorName",
        "ChannelShieldID", "ChannelShieldName", "RangeShifterDescription",
        "LateralSpreadingDeviceDescription", "RangeModulatorDescription", "GeneralAccessoryID",
        # (3010,xxxx)
        "EffectiveDoseCalculationMethodDescription", "SegmentationCreationTemplateLabel",
        # (4010,xxxx)
        "ItineraryIDAssigningAuthority", "RouteIDAssigningAuthority", "CarrierID",
        # (0028,04x2), a repeating group of retired ACR-NEMA compression
        "CoefficientCoding",
    }
)  # fmt: skip


def lo_sh_elements() -> list[tuple[int, str, str]]:
    """(tag, VR, keyword) of every public LO and SH element of the dictionary outside groups 0000 and 0002;
    a repeating group by its first tag (``(0028,04x2)`` as (0028,0402)). The attributes veil adds to pydicom's
    dictionary (``veil.recipes``) are all Table E.1-1 rows, which ``test_recipe_profile.py`` checks."""
    found = [
        (tag, entry[0], entry[4])
        for tag, entry in DicomDictionary.items()
        if entry[0] in TEXT_VRS and tag >> 16 not in SKIP_GROUPS
    ]
    for mask, entry in RepeatersDictionary.items():
        if entry[0] in TEXT_VRS:
            found.append((int(mask.replace("x", "0"), 16), entry[0], entry[4]))
    return sorted(found)


def named_by_basic(basic: Plan, tag: int) -> bool:
    return tag in basic.tags or any(tag & mask == value for mask, value, _ in basic.masks)


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {name: compile_recipe(name).plan for name in ("ps3.15-basic", *RECIPES)}


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_lo_and_sh_element_the_table_does_not_list_has_a_reviewed_action(recipe: str, plans) -> None:
    """Each one is named by a rule of the recipe or listed in CLEANED and then cleaned by the vr rule: none is
    left on Basic's default keep, and a new dictionary entry fails until it is classified."""
    basic, plan = plans["ps3.15-basic"], plans[recipe]
    elements = lo_sh_elements()
    assert len(elements) > 450  # pydicom 3.0.2: 480 entries and 11 repeating groups
    unreviewed, wrong, unlisted = [], [], set()
    for tag, vr, keyword in elements:
        if named_by_basic(basic, tag):
            continue  # the table's action: a tag or mask rule the vr rules cannot reach
        unlisted.add(keyword)
        action = plan.rule_for_public(tag, vr).action
        if tag in plan.tags:  # the recipe's own keyword rule: kept, removed, emptied or cleaned by name
            if keyword in CLEANED:
                wrong.append(f"{keyword}: named by a rule ({action.name}) and listed in CLEANED")
        elif keyword not in CLEANED:
            unreviewed.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword} {vr}: {action.name}")
        elif action != Action.CALL:
            wrong.append(f"{keyword}: {action.name}, want CALL (the vr {vr} clean rule)")
    assert not unreviewed, (
        "LO/SH elements Table E.1-1 does not list and nobody has classified: add a keep or remove rule to "
        "both recipes, or list them in CLEANED\n" + "\n".join(unreviewed)
    )
    assert not wrong, "\n".join(wrong)
    assert CLEANED <= unlisted, (
        f"CLEANED names elements that are not unlisted LO/SH: {sorted(CLEANED - unlisted)}"
    )


def test_both_recipes_treat_every_lo_and_sh_element_alike(plans) -> None:
    """One review for both recipes: an element a person may have typed into is no safer for research."""
    basic = plans["ps3.15-basic"]
    differ = [
        f"{keyword}: " + ", ".join(f"{r} {plans[r].rule_for_public(tag, vr).action.name}" for r in RECIPES)
        for tag, vr, keyword in lo_sh_elements()
        if not named_by_basic(basic, tag) and len({plans[r].rule_for_public(tag, vr) for r in RECIPES}) > 1
    ]
    assert not differ, "\n".join(differ)


@pytest.mark.parametrize("recipe", RECIPES)
def test_an_lo_or_sh_element_no_dictionary_knows_is_cleaned_and_codes_are_kept(recipe: str, plans) -> None:
    """A public element the dictionary does not know yet, written with an explicit LO or SH VR, is cleaned by
    the vr rules where Basic would keep it; CodeValue (SH) stays exact because a keyword rule names it."""
    unknown = 0x0040FFF0
    assert dictionary_entry(unknown) is None
    assert plans["ps3.15-basic"].rule_for_public(unknown, "LO").action == Action.KEEP
    plan = plans[recipe]
    assert plan.rule_for_public(unknown, "LO").action == Action.CALL
    assert plan.rule_for_public(unknown, "SH").action == Action.CALL
    assert plan.rule_for_public(0x00080100, "SH").action == Action.KEEP  # CodeValue
    assert plan.rule_for_public(0x00620009, "LO").action == Action.CALL  # SegmentAlgorithmName
    assert plan.rule_for_public(0x00140100, "LO").action == Action.REMOVE  # ComponentWelderIDs
