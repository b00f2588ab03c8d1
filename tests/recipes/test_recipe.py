"""Recipes: validation with file and line, resolution (extends, options, own rules), compilation to a Plan, the
public functions the CLI uses, the generated recipes against their generator, and the free-text cleaner."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from veil.core.plan import Action, Plan, Rule
from veil.errors import RecipeError
from veil.keys import Key, KeyedFunctions
from veil.recipes import (
    Recipe,
    check_recipe,
    compile_recipe,
    diff_recipes,
    list_recipes,
    load_recipe,
    parse_tag,
    recipes_dir,
)
from veil.recipes.freetext import clean_element

ROOT = Path(__file__).resolve().parents[2]
STANDARD = ROOT.parent / "shared" / "standard"
SHIPPED = {
    "ps3.15-basic",
    "hipaa-safe-harbor",
    "research",
    "clean-recognizable-visual-features",
    "retain-safe-private",
    "retain-uids",
    "retain-device-identity",
    "retain-institution-identity",
    "retain-patient-characteristics",
    "retain-long-full-dates",
    "retain-long-modified-dates",
    "clean-descriptors",
    "clean-structured-content",
    "clean-graphics",
    "clean-unlisted-short-text",  # veil's own option (hipaa-safe-harbor, research)
}

PROFILE = """\
name: bad
version: "1"
edition: 2026d
defaults: {public: keep, private: remove}
"""


def write(tmp_path: Path, text: str, name: str = "bad.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def refused(path: Path) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        check_recipe(path)
    return info.value


# --- refusals: one case per problem, each naming the file, the line and the problem ----------------------

# (id, recipe text, line of the problem, words of the message)
REFUSALS = [
    ("unknown_top_key", PROFILE + "rules: []\nrulez: []\n", 6, "unknown key 'rulez'"),
    (
        "unknown_rule_key",
        PROFILE + "rules:\n  - {keyword: PatientName, acton: remove}\n",
        6,
        "unknown key 'acton'",
    ),
    (
        "unknown_keyword",
        PROFILE + "rules:\n  - {keyword: PatientNmae, action: remove}\n",
        6,
        "did you mean 'PatientName'",
    ),
    (
        "unknown_action",
        PROFILE + "rules:\n  - {keyword: PatientName, action: scrub}\n",
        6,
        "unknown action 'scrub'",
    ),
    ("unknown_vr", PROFILE + "rules:\n  - {vr: XX, action: remove}\n", 6, "unknown VR 'XX'"),
    ("uid_on_non_ui", PROFILE + "rules:\n  - {keyword: PatientName, action: uid}\n", 6, "uid applies to UI"),
    (
        "shift_on_non_date",
        PROFILE + "parameters: {date_shift_days: [-10, -1]}\nrules:\n"
        "  - {keyword: PatientName, action: shift}\n",
        7,
        "shift applies to DA, DT and TM",
    ),
    (
        "age_on_non_as",
        PROFILE + "rules:\n  - {keyword: PatientWeight, action: age}\n",
        6,
        "age applies to AS",
    ),
    ("recurse_on_non_sq", PROFILE + "rules:\n  - {keyword: PatientName, action: recurse}\n", 6, "sequences"),
    (
        "clean_on_binary",
        PROFILE + "rules:\n  - {keyword: PixelData, action: clean}\n",
        6,
        "clean applies to text",
    ),
    (
        "pseudonym_on_date",
        PROFILE + "rules:\n  - {keyword: StudyDate, action: pseudonym}\n",
        6,
        "pseudonym applies",
    ),
    (
        "pseudonym_too_long_for_sh",
        PROFILE + "parameters: {pseudonym_pattern: 'P{hash:20}'}\nrules:\n"
        "  - {keyword: AccessionNumber, action: pseudonym}\n",
        7,
        "SH holds 16",
    ),
    (
        "conflicting_keyword_and_tag",
        PROFILE + "rules:\n  - {keyword: PatientName, action: remove}\n"
        '  - {tag: "(0010,0010)", action: empty}\n',
        7,
        "conflicting rules for (0010,0010)",
    ),
    (
        "duplicate_rule",
        PROFILE + "rules:\n  - {vr: PN, action: remove}\n  - {vr: PN, action: remove}\n",
        7,
        "duplicate rules for vr PN",
    ),
    (
        "replace_without_value",
        PROFILE + "rules:\n  - {keyword: StudyDescription, action: replace}\n",
        6,
        "replace needs a value",
    ),
    (
        "replace_value_invalid_for_vr",
        PROFILE + "rules:\n  - {keyword: StudyDate, action: replace,\n     value: today}\n",
        7,
        "not a valid DA value",
    ),
    (
        "replace_value_too_long",
        PROFILE + "rules:\n  - {keyword: AccessionNumber, action: replace, value: '12345678901234567'}\n",
        6,
        "longer than SH allows",
    ),
    (
        "value_without_replace",
        PROFILE + "rules:\n  - {keyword: StudyDate, action: empty, value: x}\n",
        6,
        "value is for replace only",
    ),
    (
        "shift_without_date_shift_days",
        PROFILE + "rules:\n  - {keyword: StudyDate, action: shift}\n",
        6,
        "shift needs parameters.date_shift_days",
    ),
    (
        "option_shift_without_date_shift_days",
        PROFILE + "options:\n  - clean-graphics\n  - retain-long-modified-dates\nrules: []\n",
        7,
        "date_shift_days is not set",
    ),
    ("bad_tag_syntax", PROFILE + 'rules:\n  - {tag: "0010,0010", action: remove}\n', 6, "bad tag"),
    ("bad_tag_hex", PROFILE + 'rules:\n  - {tag: "(0010,00G0)", action: remove}\n', 6, "bad tag"),
    (
        "private_creator_even_group",
        PROFILE + "rules:\n  - {tag: '(0010,\"ACME\",10)', action: keep}\n",
        6,
        "needs an odd group",
    ),
    (
        "odd_group_as_plain_tag",
        PROFILE + 'rules:\n  - {tag: "(0019,1010)", action: keep}\n',
        6,
        "an odd group is private",
    ),
    ("file_meta_group", PROFILE + 'rules:\n  - {tag: "(0002,0003)", action: uid}\n', 6, "group 0002"),
    (
        "file_meta_keyword",
        PROFILE + "rules:\n  - {keyword: MediaStorageSOPInstanceUID, action: uid}\n",
        6,
        "group 0002",
    ),
    ("group_length", PROFILE + 'rules:\n  - {tag: "(0008,0000)", action: keep}\n', 6, "group length"),
    (
        "mask_matching_everything",
        PROFILE + 'rules:\n  - {tag: "(xxxx,xxxx)", action: keep}\n',
        6,
        "matching every tag",
    ),
    (
        "two_matchers",
        PROFILE + "rules:\n  - {keyword: PatientName, vr: PN, action: remove}\n",
        6,
        "exactly one of keyword, tag or vr",
    ),
    ("missing_action", PROFILE + "rules:\n  - {keyword: PatientName}\n", 6, "needs an action"),
    (
        "unknown_extends",
        "name: bad\nversion: '1'\nextends: ps3.15-basics\nrules: []\n",
        3,
        "unknown recipe 'ps3.15-basics' in extends",
    ),
    ("unknown_option", PROFILE + "options: [retain-uid]\nrules: []\n", 5, "unknown option 'retain-uid'"),
    (
        "extends_an_option",
        "name: bad\nversion: '1'\nextends: retain-uids\nrules: []\n",
        3,
        "is an option overlay",
    ),
    ("option_names_a_profile", PROFILE + "options:\n  - research\nrules: []\n", 6, "is a profile"),
    (
        "option_listed_twice",
        PROFILE + "options:\n  - retain-uids\n  - retain-uids\nrules: []\n",
        7,
        "listed twice",
    ),
    (
        "edition_disagrees",
        "name: bad\nversion: '1'\nedition: 2025c\nextends: ps3.15-basic\nrules: []\n",
        4,
        "edition 2025c but ps3.15-basic follows PS3.15 2026d",
    ),
    (
        "bad_edition",
        "name: bad\nversion: '1'\nedition: latest\nextends: ps3.15-basic\nrules: []\n",
        3,
        "write a PS3.15 edition",
    ),
    (
        "profile_without_edition",
        "name: bad\nversion: '1'\ndefaults: {public: keep, private: remove}\nrules: []\n",
        1,
        "must name its PS3.15 edition",
    ),
    (
        "missing_defaults",
        "name: bad\nversion: '1'\nedition: 2026d\nrules: []\n",
        1,
        "defaults.public is not set",
    ),
    (
        "bad_default",
        "name: bad\nversion: '1'\nedition: 2026d\ndefaults: {public: empty, private: remove}\nrules: []\n",
        4,
        "defaults.public: 'empty' is not one of keep, remove",
    ),
    (
        "sequence_default_and_vr_sq_rule",
        PROFILE.replace("private: remove}", "private: remove, sequence: remove}")
        + "rules:\n  - {vr: SQ, action: recurse}\n",
        4,
        "both decide unnamed sequences",
    ),
    (
        "date_shift_range_includes_zero",
        PROFILE + "parameters:\n  date_shift_days: [-10, 10]\nrules: []\n",
        6,
        "includes 0",
    ),
    (
        "date_shift_range_reversed",
        PROFILE + "parameters:\n  date_shift_days: [-1, -10]\nrules: []\n",
        6,
        "lowest first",
    ),
    (
        "pattern_without_hash",
        PROFILE + "parameters:\n  pseudonym_pattern: 'ANON'\nrules: []\n",
        6,
        "no {hash}",
    ),
    (
        "counter_without_width",
        PROFILE + "parameters:\n  pseudonym_pattern: 'SUBJ-{counter}'\nrules: []\n",
        6,
        "write {counter:N}",
    ),
    (
        "counter_too_wide",
        PROFILE + "parameters:\n  pseudonym_pattern: 'SUBJ-{counter:13}'\nrules: []\n",
        6,
        "(1 to 12)",
    ),
    (
        "counter_mixed_with_hash",
        PROFILE + "parameters:\n  pseudonym_pattern: '{hash:4}-{counter:4}'\nrules: []\n",
        6,
        "cannot be mixed",
    ),
    (
        "two_counters",
        PROFILE + "parameters:\n  pseudonym_pattern: '{counter:3}-{counter:3}'\nrules: []\n",
        6,
        "one {counter:N} field only",
    ),
    (
        "counter_literal_text",
        PROFILE + "parameters:\n  pseudonym_pattern: 'SUBJ#{counter:3}'\nrules: []\n",
        6,
        "literal text may hold",
    ),
    ("age_cap_out_of_range", PROFILE + "parameters:\n  age_cap: 1000\nrules: []\n", 6, "1 to 999"),
    (
        "dummy_invalid_for_vr",
        PROFILE + "parameters:\n  dummy: {DA: tomorrow}\nrules: []\n",
        6,
        "not a valid DA value",
    ),
    (
        "unknown_parameter",
        PROFILE + "parameters:\n  date_shift: [-10, -1]\nrules: []\n",
        6,
        "did you mean 'date_shift_days'",
    ),
    ("version_as_float", "name: bad\nversion: 1.10\nextends: ps3.15-basic\nrules: []\n", 2, "quote it"),
    ("bad_name", "name: Bad Name\nversion: '1'\nextends: ps3.15-basic\nrules: []\n", 1, "lower case"),
    ("missing_rules", "name: bad\nversion: '1'\nextends: ps3.15-basic\n", 1, "missing key 'rules'"),
    ("rules_not_a_list", PROFILE + "rules: {keyword: PatientName}\n", 5, "rules must be a list"),
    ("duplicate_yaml_key", PROFILE + "rules: []\nname: again\n", 6, "duplicate key 'name'"),
    ("yaml_syntax", PROFILE + "rules:\n  - {keyword: PatientName, action: remove\n", 7, "not valid YAML"),
    ("empty_file", "", 1, "empty recipe"),
    (
        "option_with_defaults",
        "name: bad\nversion: '1'\nkind: option\ndefaults: {public: keep}\nrules: []\n",
        4,
        "holds rules only",
    ),
]


@pytest.mark.parametrize(("text", "line", "words"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_invalid_recipe_is_refused_with_file_line_and_problem(
    tmp_path: Path, text: str, line: int, words: str
):
    path = write(tmp_path, text)
    error = refused(path)
    assert error.path == str(path)
    assert error.line == line, str(error)
    assert words in error.problem
    assert str(error).startswith(f"{path}:{line}: ")


def test_extends_cycle_is_refused_at_the_extends_line(tmp_path: Path):
    write(tmp_path, "name: a\nversion: '1'\nextends: b\nrules: []\n", "a.yml")
    write(tmp_path, "name: b\nversion: '1'\nextends: a\nrules: []\n", "b.yml")
    error = refused(tmp_path / "a.yml")
    assert error.line == 3 and "cycle" in error.problem and error.path.endswith("b.yml")


def test_error_in_an_extended_file_names_that_file(tmp_path: Path):
    write(
        tmp_path,
        PROFILE.replace("name: bad", "name: base") + "rules:\n  - {keyword: Nope, action: keep}\n",
        "base.yml",
    )
    write(tmp_path, "name: child\nversion: '1'\nextends: base\nrules: []\n", "child.yml")
    error = refused(tmp_path / "child.yml")
    assert error.path == str(tmp_path / "base.yml") and error.line == 6


def test_unknown_shipped_name_is_refused():
    with pytest.raises(RecipeError, match="no shipped recipe named 'nope'"):
        load_recipe("nope")


# --- resolution and compilation ----------------------------------------------------------------------------


def test_shipped_recipes_are_package_data_and_the_root_link_points_at_them():
    directory = recipes_dir()
    assert {p.stem for p in directory.glob("*.yml")} == SHIPPED
    assert (ROOT / "recipes").resolve() == (ROOT / "src" / "veil" / "recipes" / "shipped").resolve()


def test_every_shipped_recipe_loads_checks_and_profiles_compile():
    infos = list_recipes()
    assert {i.name for i in infos} == SHIPPED
    for info in infos:
        recipe = check_recipe(info.path)
        assert recipe.name == Path(info.path).stem
        assert recipe.edition == "2026d"
        if recipe.kind == "profile":
            assert isinstance(compile_recipe(recipe).plan, Plan)


def test_load_by_name_equals_load_by_path():
    by_name = load_recipe("research")
    by_path = load_recipe(recipes_dir() / "research.yml")
    assert by_name == by_path
    assert by_name.layers[0] == "ps3.15-basic 2026d.2" and by_name.layers[-1] == "research 1.3"


def test_content_hash_covers_rules_not_name_or_version(tmp_path: Path):
    base = "version: '{v}'\nextends: ps3.15-basic\nrules:\n  - {{keyword: StudyDescription, action: {a}}}\n"
    one = load_recipe(write(tmp_path, "name: one\n" + base.format(v="1", a="keep"), "one.yml"))
    two = load_recipe(write(tmp_path, "name: two\n" + base.format(v="7", a="keep"), "two.yml"))
    three = load_recipe(write(tmp_path, "name: three\n" + base.format(v="1", a="clean"), "three.yml"))
    assert one.content_hash == two.content_hash != three.content_hash
    assert len(one.content_hash) == 64
    assert load_recipe("research").content_hash == load_recipe("research").content_hash


def test_requires_key_when_uid_pseudonym_or_shift_is_used(tmp_path: Path):
    assert load_recipe("ps3.15-basic").requires_key  # U rows
    plain = write(tmp_path, PROFILE + "rules:\n  - {vr: PN, action: remove}\n")
    assert not load_recipe(plain).requires_key
    shifted = write(
        tmp_path,
        PROFILE + "parameters: {date_shift_days: [-9, -2]}\nrules:\n"
        "  - {keyword: StudyDate, action: shift}\n",
        "shifted.yml",
    )
    recipe = load_recipe(shifted)
    assert recipe.requires_key
    compiled = compile_recipe(recipe)
    assert compiled.key_parameters == {"shift_range": (-9, -2)}
    functions = KeyedFunctions(Key(bytes(32)), **compiled.key_parameters)
    assert -9 <= functions.date_shift("PID") <= -2


def test_later_layer_wins_and_show_names_the_source(tmp_path: Path):
    path = write(
        tmp_path,
        "name: layered\nversion: '1'\nextends: ps3.15-basic\n"
        "options: [retain-uids, retain-device-identity]\nrules:\n"
        "  - {keyword: DeviceUID, action: remove}\n",
        "layered.yml",
    )
    recipe = load_recipe(path)
    rules = {r.match: r for r in recipe.rules}
    assert rules["(0008,0018)"].action == "keep" and rules["(0008,0018)"].source.startswith(
        "retain-uids.yml:"
    )
    assert rules["(0018,1000)"].action == "keep"  # DeviceSerialNumber: retain-device-identity over basic
    assert rules["(0018,1002)"].action == "remove" and rules["(0018,1002)"].source == "layered.yml:6"
    shown = recipe.show()
    assert "(0018,1002) DeviceUID" in shown and "layered.yml:6" in shown
    assert recipe.options == ("retain-uids", "retain-device-identity")


def test_diff_lists_changed_rules_and_parameters():
    text = diff_recipes("ps3.15-basic", "research")
    assert "(0010,0020) PatientID: dummy -> pseudonym" in text
    assert "parameters.date_shift_days: - -> [-3650, -1]" in text
    assert "vr UI: (no rule) -> uid" in text
    assert diff_recipes("research", "research").endswith(
        "no differences (content sha256 " + load_recipe("research").content_hash + ")"
    )


def test_compiled_actions_follow_the_vr(tmp_path: Path):
    path = write(
        tmp_path,
        PROFILE
        + textwrap.dedent("""\
        parameters:
          date_shift_days: [-30, -1]
          dummy: {LO: REDACTED}
        rules:
          - {keyword: ReferencedImageSequence, action: keep}
          - {keyword: StudyTime, action: shift}
          - {keyword: StudyDate, action: shift}
          - {keyword: InstitutionName, action: dummy}
          - {keyword: ProcedureCodeSequence, action: dummy}
          - {keyword: StudyDescription, action: clean}
          - {keyword: RequestAttributesSequence, action: clean}
          - {keyword: LargestImagePixelValue, action: replace, value: 255}
          - {keyword: PatientIdentityRemoved, action: replace, value: "YES"}
          - {tag: "(60xx,xxxx)", action: remove}
          - {tag: "(60xx,3000)", action: keep}
          - {tag: '(0019,"ACME 1.0",10)', action: keep}
          - {tag: '(0019,"ACME 1.0",11)', action: recurse}
          - {vr: SQ, action: keep}
          - {vr: UI, action: uid}
        """),
    )
    plan = compile_recipe(path).plan
    assert plan.tags[0x00081140] == Rule(Action.RECURSE)  # keep on a sequence walks it
    assert plan.tags[0x00080030] == Rule(Action.KEEP)  # shift on TM
    assert plan.tags[0x00080020] == Rule(Action.SHIFT)
    assert plan.tags[0x00080080] == Rule(Action.REPLACE, "REDACTED")  # the recipe's dummy for LO
    assert plan.tags[0x00081032] == Rule(Action.EMPTY)  # dummy on a sequence
    assert plan.tags[0x00081030] == Rule(Action.CALL) and plan.callback is clean_element
    assert plan.tags[0x00400275] == Rule(Action.RECURSE)  # clean on a sequence
    assert plan.tags[0x00280107] == Rule(Action.REPLACE, b"\xff\x00")  # US or SS -> first choice, LE
    assert plan.tags[0x00120062] == Rule(Action.REPLACE, "YES")
    assert plan.masks[0][:2] == (0xFF00FFFF, 0x60003000)  # the more specific mask first
    assert plan.rule_for_public(0x60023000, "OW") == Rule(Action.KEEP)
    assert plan.rule_for_public(0x60020010, "US") == Rule(Action.REMOVE)
    assert plan.private[(0x0019, "ACME 1.0", 0x10)] == Rule(Action.KEEP)
    assert plan.private[(0x0019, "ACME 1.0", 0x11)] == Rule(Action.RECURSE)
    assert plan.vr_defaults == {"SQ": Action.RECURSE, "UI": Action.UID}
    assert plan.default_public == Action.KEEP and plan.default_private == Action.REMOVE


def test_a_user_recipe_extends_a_sibling_file_and_a_shipped_option(tmp_path: Path):
    write(
        tmp_path,
        PROFILE.replace("name: bad", "name: site-base") + "rules:\n  - {vr: PN, action: empty}\n",
        "site-base.yml",
    )
    path = write(
        tmp_path,
        "name: site\nversion: '2'\nextends: site-base\noptions: [retain-uids]\nrules: []\n",
        "site.yml",
    )
    recipe = load_recipe(path)
    assert recipe.extends == "site-base" and recipe.edition == "2026d"
    assert compile_recipe(recipe).plan.vr_defaults["PN"] == Action.EMPTY


def test_an_option_overlay_alone_does_not_compile():
    option = load_recipe("retain-uids")
    assert option.kind == "option"
    with pytest.raises(RecipeError, match="not a complete recipe"):
        compile_recipe(option)


def test_parse_tag_forms():
    assert parse_tag("(0010,0010)") == ("tag", 0x00100010)
    assert parse_tag("(60xx,3000)") == ("mask", (0xFF00FFFF, 0x60003000))
    assert parse_tag("(50XX,XXXX)") == ("mask", (0xFF000000, 0x50000000))
    assert parse_tag('(0029,"SIEMENS CSA HEADER",10)') == ("private", (0x0029, "SIEMENS CSA HEADER", 0x10))


def test_recipe_is_frozen():
    recipe = load_recipe("ps3.15-basic")
    assert isinstance(recipe, Recipe)
    with pytest.raises(AttributeError):
        recipe.name = "x"  # type: ignore[misc]


# --- the generated recipes ----------------------------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location("gen_recipes", ROOT / "scripts" / "gen_recipes.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.skipif(not STANDARD.is_dir(), reason=f"standard tables not found at {STANDARD}")
def test_generated_recipes_do_not_drift_from_the_generator(tmp_path: Path):
    gen = _generator()
    assert gen.main(["--standard", str(STANDARD), "--out", str(tmp_path)]) == 0
    generated = sorted(p.name for p in tmp_path.glob("*.yml"))
    assert len(generated) == 11
    drift = [n for n in generated if (tmp_path / n).read_bytes() != (recipes_dir() / n).read_bytes()]
    assert not drift, f"run scripts/gen_recipes.py: {drift} differ from what the generator writes"
    assert gen.main(["--standard", str(STANDARD), "--out", str(recipes_dir()), "--check"]) == 0


@pytest.mark.skipif(not STANDARD.is_dir(), reason=f"standard tables not found at {STANDARD}")
def test_generator_refuses_an_altered_table(tmp_path: Path):
    gen = _generator()
    for name in STANDARD.glob("ps3.15_2026d_*.json"):
        (tmp_path / name.name).write_text(name.read_text(encoding="utf-8").replace('"X/Z"', '"X"', 1))
    with pytest.raises(SystemExit, match="content_sha256"):
        gen.generate(tmp_path)


def test_a_longer_pattern_in_a_child_is_refused_at_the_pattern_line(tmp_path: Path):
    path = write(
        tmp_path,
        "name: long\nversion: '1'\nextends: research\nparameters:\n"
        "  pseudonym_pattern: 'R{hash:16}'\nrules: []\n",
        "long.yml",
    )
    error = refused(path)
    assert error.line == 5 and "SH holds 16" in error.problem


def test_a_counter_pattern_is_checked_with_three_digits_to_grow(tmp_path: Path):
    """``{counter:N}`` values may outgrow N digits by 3: SUBJECT-{counter:6} can reach 17 characters, more
    than SH (16) holds, though its first values are 14."""
    path = write(
        tmp_path,
        "name: long\nversion: '1'\nextends: research\nparameters:\n"
        "  pseudonym_pattern: 'SUBJECT-{counter:6}'\nrules: []\n",
        "long.yml",
    )
    error = refused(path)
    assert error.line == 5 and "are 17 characters" in error.problem and "SH holds 16" in error.problem
    fits = write(
        tmp_path,
        "name: fits\nversion: '1'\nextends: research\nparameters:\n"
        "  pseudonym_pattern: 'SUBJ-{counter:8}'\nrules: []\n",
        "fits.yml",
    )
    compiled = compile_recipe(load_recipe(fits))
    assert compiled.counter is not None and compiled.counter.max_length == 16


def test_outputs_are_marked_with_the_method_and_option_codes() -> None:
    from veil.recipes import compile_recipe, load_recipe

    inserted = {tag: (vr, value) for tag, vr, value in compile_recipe(load_recipe("research")).plan.insert}
    assert inserted[0x00120062] == ("CS", "YES")
    assert "research" in inserted[0x00120063][1]
    codes = {item[0][2] for item in inserted[0x00120064][1]}
    assert codes == {"113100", "113103", "113104", "113105", "113107", "113108", "113111"}
    assert inserted[0x00280303] == ("CS", "MODIFIED")
    basic = {tag: value for tag, _, value in compile_recipe(load_recipe("ps3.15-basic")).plan.insert}
    assert {item[0][2] for item in basic[0x00120064]} == {"113100"}
    assert basic[0x00280303] == "REMOVED"
