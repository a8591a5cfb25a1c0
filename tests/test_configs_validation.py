"""Config JSON validation (config_app.services.validation): the schema's fields, types and references."""

import copy
import json

import pytest

from config_app.services.outline import interval_text, outline
from config_app.services.validation import CHANNEL_SOURCES, CHANNEL_TYPES, validate_config, validate_config_json
from rta_core.errors import InvalidArgument


def demo_config():
    """A small but complete configuration: one application with a tree, parameters, channels, conversions, events."""
    return {
        "demo": {
            "desc": "Demo application",
            "identity": {"commsPath": "demo", "applicationVersionId": "00A1000F"},
            "rda": {"ownerId": 65535, "support": "notSupported"},
            "tree": {
                "groups": [
                    {
                        "id": "Chassis",
                        "desc": "Chassis group",
                        "params": ["vCar:demo"],
                        "groups": [{"id": "Wheels", "params": ["nWheelFL:demo"]}],
                    },
                ],
                "params": ["gLat:demo"],
            },
            "parameters": [
                {
                    "id": "vCar:demo",
                    "name": "vCar",
                    "desc": "Car speed",
                    "min": 0,
                    "max": 400,
                    "warnMin": 0,
                    "warnMax": 380,
                    "conv": "speed:demo",
                    "channels": [1, 2],
                },
                {
                    "id": "nWheelFL:demo",
                    "name": "nWheelFL",
                    "desc": "Front left wheel speed",
                    "min": 0,
                    "max": 3000,
                    "conv": "1to1:demo",
                    "unit": "rpm",
                    "channels": [3],
                },
                {
                    "id": "gLat:demo",
                    "name": "gLat",
                    "desc": "Lateral acceleration",
                    "min": -6,
                    "max": 6,
                    "conv": "1to1:demo",
                    "channels": [4],
                    "type": "virt",
                    "func": {"lang": "fdl", "code": "$vCar * 2"},
                },
            ],
            "channels": [
                {"id": 1, "name": "0x1000A", "source": "periodic", "type": "u16", "interval": 10_000_000},
                {"id": 2, "source": "timestamped", "type": "f32"},
                {"id": 3, "source": "row", "type": "s32", "interval": 1_000_000},
                {"id": 4, "type": "3f32"},
            ],
            "conversions": [
                {
                    "name": "speed:demo",
                    "unit": "km/h",
                    "format": "%5.1f",
                    "rational": {"coeffs": [0, 0.01, 0, 0, 0, 1]},
                },
                {"name": "1to1:demo", "unit": "", "format": "%5.3f"},
                {"name": "gear:demo", "text": {"keys": [0, 1, 2], "values": ["N", "1st", "2nd"], "default": "?"}},
                {"name": "map:demo", "table": {"raw": [0, 10], "calibrated": [0, 100], "interpolated": True}},
                {"name": "calc:demo", "formula": {"code": "x * 2"}},
            ],
            "errors": [
                {
                    "name": "E1 Sensor",
                    "desc": "Noise",
                    "group": "Analogue:demo",
                    "current": "e1Cur:demo",
                    "logged": "e1Log:demo",
                    "bit": 3,
                },
            ],
            "events": [
                {"id": 8, "code": "0008", "desc": "0008:demo Example Event", "pri": "high", "convs": []},
                {"id": 9, "desc": "Pit stop", "convs": ["1to1:demo"]},
            ],
        },
        "VIRT": {"parameters": [], "channels": [{"id": 100, "type": "f64"}]},
    }


def problem(document):
    with pytest.raises(InvalidArgument) as info:
        validate_config(document)
    return info.value.message


def test_complete_config_is_valid():
    validate_config(demo_config())
    assert validate_config_json(json.dumps(demo_config()).encode()) == demo_config()


def test_minimal_documents_are_valid():
    validate_config({})
    validate_config({"app": {}})
    validate_config({"app": {"parameters": [{"id": "p", "name": "p", "desc": "d", "conv": "c"}]}})
    validate_config(
        {
            "app": {"channels": [{"id": 1.0}]},
            "x": {"parameters": [{"id": "p", "name": "p", "desc": "d", "conv": "c", "channels": [1]}]},
        }
    )  # ids resolve across applications


def test_unknown_properties_are_allowed():
    document = demo_config()
    document["demo"]["extra"] = {"anything": 1}
    document["demo"]["channels"][0]["vendorData"] = [1, 2]
    validate_config(document)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "invalid JSON: the config is empty"),
        (b"{", "invalid JSON at line 1 column 2"),
        (b'{"a": 1,}', "invalid JSON at line 1 column 9"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b"\xff\xfe\xfa", "invalid JSON"),
        (b"[]", "config: must be an object of applications keyed by name, got an array"),
        (b'"text"', "config: must be an object"),
        (b'{"demo": []}', "demo: must be an object, got an array"),
    ],
)
def test_not_a_config_document(data, expected):
    with pytest.raises(InvalidArgument) as info:
        validate_config_json(data)
    assert expected in info.value.message


def test_utf8_bom_is_accepted():
    validate_config_json(b"\xef\xbb\xbf" + json.dumps(demo_config()).encode())


def test_undefined_channel_reference_names_the_first_problem():
    document = demo_config()
    document["demo"]["parameters"][2]["channels"] = [7, 8]
    assert problem(document) == "demo.parameters[2].channels[0]: channel 7 is not defined"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["demo"]["parameters"][0].pop("conv"), "demo.parameters[0]: missing required field 'conv'"),
        (lambda d: d["demo"]["parameters"][1].pop("id"), "demo.parameters[1]: missing required field 'id'"),
        (lambda d: d["demo"]["parameters"][0].update(name=""), "demo.parameters[0].name: must not be empty"),
        (
            lambda d: d["demo"]["parameters"][0].update(desc=5),
            "demo.parameters[0].desc: must be a string, got a number",
        ),
        (
            lambda d: d["demo"]["parameters"][0].update(min="0"),
            "demo.parameters[0].min: must be a number, got a string",
        ),
        (
            lambda d: d["demo"]["parameters"][0].update(max=True),
            "demo.parameters[0].max: must be a number, got a boolean",
        ),
        (
            lambda d: d["demo"]["parameters"][0].update(shift=1.5),
            "demo.parameters[0].shift: must be an integer, got 1.5",
        ),
        (
            lambda d: d["demo"]["parameters"][0].update(byteOrder="middle"),
            "demo.parameters[0].byteOrder: must be one of le, be",
        ),
        (lambda d: d["demo"]["parameters"][0].update(type="calc"), "demo.parameters[0].type: must be one of std, virt"),
        (
            lambda d: d["demo"]["parameters"][0].update(channels=1),
            "demo.parameters[0].channels: must be an array, got a number",
        ),
        (
            lambda d: d["demo"]["parameters"][0].update(channels=["1"]),
            "demo.parameters[0].channels[0]: must be an integer channel id",
        ),
        (
            lambda d: d["demo"]["parameters"][2]["func"].pop("code"),
            "demo.parameters[2].func: missing required field 'code'",
        ),
        (
            lambda d: d["demo"]["parameters"][2]["func"].update(lang="py"),
            "demo.parameters[2].func.lang: must be one of",
        ),
        (lambda d: d["demo"]["parameters"].append("p"), "demo.parameters[3]: must be an object, got a string"),
        (lambda d: d["demo"]["channels"][1].pop("id"), "demo.channels[1]: missing required field 'id'"),
        (lambda d: d["demo"]["channels"][1].update(id="2"), "demo.channels[1].id: must be an integer, got a string"),
        (
            lambda d: d["demo"]["channels"][1].update(type="u64"),
            "demo.channels[1].type: must be one of u8, s8, u16, s16, u32, s32, f32, 3f32, f64 (got 'u64')",
        ),
        (
            lambda d: d["demo"]["channels"][1].update(source="wifi"),
            "demo.channels[1].source: must be one of can, event,",
        ),
        (lambda d: d["demo"]["channels"][1].update(interval="10ms"), "demo.channels[1].interval: must be an integer"),
        (
            lambda d: d["demo"]["channels"].append({"id": 3}),
            "demo.channels[4].id: channel 3 is already defined at demo.channels[2]",
        ),
        (
            lambda d: d["VIRT"]["channels"].append({"id": 1}),
            "VIRT.channels[1].id: channel 1 is already defined at demo.channels[0]",
        ),
        (lambda d: d["demo"]["conversions"][0].pop("name"), "demo.conversions[0]: missing required field 'name'"),
        (
            lambda d: d["demo"]["conversions"][0]["rational"].update(coeffs=[1, 2]),
            "demo.conversions[0].rational.coeffs: must have 6 items, got 2",
        ),
        (
            lambda d: d["demo"]["conversions"][2]["text"].update(values=[1]),
            "demo.conversions[2].text.values[0]: must be a string",
        ),
        (
            lambda d: d["demo"]["conversions"][3]["table"].pop("calibrated"),
            "demo.conversions[3].table: missing required field 'calibrated'",
        ),
        (
            lambda d: d["demo"]["conversions"][3]["table"].update(interpolated="yes"),
            "demo.conversions[3].table.interpolated: must be a boolean",
        ),
        (
            lambda d: d["demo"]["conversions"][4].update(formula={}),
            "demo.conversions[4].formula: missing required field 'code'",
        ),
        (lambda d: d["demo"]["errors"][0].pop("logged"), "demo.errors[0]: missing required field 'logged'"),
        (lambda d: d["demo"]["events"][0].pop("id"), "demo.events[0]: missing required field 'id'"),
        (
            lambda d: d["demo"]["events"][0].update(pri="urgent"),
            "demo.events[0].pri: must be one of debug, low, medium, high",
        ),
        (lambda d: d["demo"]["events"][1].update(convs=[3]), "demo.events[1].convs[0]: must be a string, got a number"),
        (
            lambda d: d["demo"]["tree"]["groups"][0]["groups"][0].pop("id"),
            "demo.tree.groups[0].groups[0]: missing required field 'id'",
        ),
        (lambda d: d["demo"]["tree"].update(params=[1]), "demo.tree.params[0]: must be a string"),
        (
            lambda d: d["demo"]["identity"].update(applicationVersionId="xyz"),
            "demo.identity.applicationVersionId: must match",
        ),
        (
            lambda d: d["demo"]["rda"].update(support="maybe"),
            "demo.rda.support: must be one of supported, notSupported",
        ),
        (lambda d: d["demo"].update(desc=None), "demo.desc: must be a string, got null"),
    ],
)
def test_schema_rules(mutate, expected):
    document = copy.deepcopy(demo_config())
    mutate(document)
    assert problem(document).startswith(expected)


def test_every_channel_type_and_source_is_accepted():
    channels = [{"id": i, "type": t, "source": s} for i, (t, s) in enumerate(zip(CHANNEL_TYPES, CHANNEL_SOURCES * 2))]
    validate_config({"a": {"channels": channels}})


def test_deeply_nested_json_is_rejected_cleanly():
    with pytest.raises(InvalidArgument):
        validate_config_json(b'{"a": {"tree": {"groups": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}}")


def test_outline_reads_units_from_conversions_and_defaults():
    (app, virt) = outline(demo_config())
    assert app["name"] == "demo" and virt["name"] == "VIRT"
    rows = {p["name"]: p for p in app["parameters"]["rows"]}
    assert rows["vCar"]["unit"] == "km/h"  # from the conversion
    assert rows["nWheelFL"]["unit"] == "rpm"  # the parameter's own unit wins
    assert rows["vCar"]["channels"] == "1, 2"
    channel = app["channels"]["rows"][3]
    assert (channel["type"], channel["source"], channel["interval"]) == ("3f32", "row", 0)
    assert app["tree"]["groups"][0]["groups"][0]["params"] == ["nWheelFL:demo"]
    kinds = [c["kind"] for c in app["conversions"]["rows"]]
    assert kinds == ["rational", "rational", "text", "table", "formula"]
    assert interval_text(10_000_000) == "10 ms (100 Hz)"
    assert (
        outline({"a": {"parameters": list(range(5)) + [{"id": "p"}] * 5}}, max_rows=2)[0]["parameters"]["hidden"] == 3
    )
