"""Sample types: a channel's type name (config, spec §8) <-> numpy dtype <-> Schema Mapping enum (§14).

A channel's samples are little-endian, all of one width: ``u8 s8 u16 s16 u32
s32 f32 f64``. A schema mapping gives a field's type as a
``TargetChannelDataType`` number (UNSPECIFIED: the kit's default, ``f64``).
``sample_dtype`` accepts any of these spellings; ``as_samples`` converts values
to a channel's type.
"""

import numpy as np

DEFAULT_TYPE = "f64"
DTYPES = {
    "u8": np.dtype("<u1"),
    "s8": np.dtype("<i1"),
    "u16": np.dtype("<u2"),
    "s16": np.dtype("<i2"),
    "u32": np.dtype("<u4"),
    "s32": np.dtype("<i4"),
    "f32": np.dtype("<f4"),
    "f64": np.dtype("<f8"),
}
# rta.toolkit.api.schema_mapping_service.TargetChannelDataType numbers (9 is reserved; 0 = unspecified).
TARGET_CHANNEL_DATA_TYPES = {
    0: DEFAULT_TYPE,
    2: "u8",
    3: "s8",
    4: "u16",
    5: "s16",
    6: "u32",
    7: "s32",
    8: "f32",
    10: "f64",
}
_ENUM_NAMES = {
    "UNSPECIFIED": DEFAULT_TYPE,
    "UINT8": "u8",
    "INT8": "s8",
    "UINT16": "u16",
    "INT16": "s16",
    "UINT32": "u32",
    "INT32": "s32",
    "FLOAT32": "f32",
    "DOUBLE64": "f64",
}
_BY_DTYPE = {dtype: name for name, dtype in DTYPES.items()}


def type_name(data_type=DEFAULT_TYPE):
    """The type name (``"s16"`` ...) of ``data_type``: a name, a TargetChannelDataType number or name, a dtype."""
    if data_type is None:
        return DEFAULT_TYPE
    if isinstance(data_type, str):
        if data_type in DTYPES:
            return data_type
        name = data_type.upper().removeprefix("TARGET_CHANNEL_DATA_TYPE_")
        if name in _ENUM_NAMES:
            return _ENUM_NAMES[name]
    elif isinstance(data_type, (int, np.integer)) and not isinstance(data_type, bool):
        if int(data_type) in TARGET_CHANNEL_DATA_TYPES:
            return TARGET_CHANNEL_DATA_TYPES[int(data_type)]
        raise ValueError(f"unknown TargetChannelDataType {int(data_type)}")
    try:
        dtype = np.dtype(data_type).newbyteorder("<")
    except TypeError:
        dtype = None
    if dtype in _BY_DTYPE:
        return _BY_DTYPE[dtype]
    raise ValueError(f"unknown sample type {data_type!r}: one of {', '.join(DTYPES)}")


def sample_dtype(data_type=DEFAULT_TYPE):
    """The little-endian numpy dtype of ``data_type`` (any spelling ``type_name`` takes)."""
    return DTYPES[type_name(data_type)]


def as_samples(values, data_type=DEFAULT_TYPE):
    """``values`` as a contiguous little-endian array of ``data_type`` (no copy when they already are).

    Floating values going to an integer type are rounded to the nearest integer,
    NaN becomes 0, and values outside the type's range are clipped to it (as are
    wider integers); anything else is a plain cast.
    """
    dtype = sample_dtype(data_type)
    array = np.asarray(values)
    if array.dtype == dtype:
        return np.ascontiguousarray(array)
    if dtype.kind in "iu" and array.dtype.kind in "fiub":
        info = np.iinfo(dtype)
        if array.dtype.kind == "f":
            array = np.nan_to_num(np.rint(array), nan=0.0)
            array = np.clip(array, info.min, info.max)
        elif not np.can_cast(array.dtype, dtype, "safe"):
            array = np.clip(array, info.min, info.max)
    return np.ascontiguousarray(array.astype(dtype, copy=False))
