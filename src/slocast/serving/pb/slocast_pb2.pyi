from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Item(_message.Message):
    __slots__ = ("numeric", "categorical")
    class NumericEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CategoricalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    numeric: _containers.ScalarMap[str, float]
    categorical: _containers.ScalarMap[str, str]
    def __init__(self, numeric: _Optional[_Mapping[str, float]] = ..., categorical: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("point", "upper", "coverage", "model_version")
    POINT_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    point: float
    upper: float
    coverage: float
    model_version: str
    def __init__(self, point: _Optional[float] = ..., upper: _Optional[float] = ..., coverage: _Optional[float] = ..., model_version: _Optional[str] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("domain", "item", "coverage")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    domain: str
    item: Item
    coverage: float
    def __init__(self, domain: _Optional[str] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., coverage: _Optional[float] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("prediction",)
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    prediction: Prediction
    def __init__(self, prediction: _Optional[_Union[Prediction, _Mapping]] = ...) -> None: ...

class Columns(_message.Message):
    __slots__ = ("numeric", "categorical")
    class NumericEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: DoubleColumn
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[DoubleColumn, _Mapping]] = ...) -> None: ...
    class CategoricalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringColumn
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringColumn, _Mapping]] = ...) -> None: ...
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    numeric: _containers.MessageMap[str, DoubleColumn]
    categorical: _containers.MessageMap[str, StringColumn]
    def __init__(self, numeric: _Optional[_Mapping[str, DoubleColumn]] = ..., categorical: _Optional[_Mapping[str, StringColumn]] = ...) -> None: ...

class DoubleColumn(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class StringColumn(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("domain", "items", "coverage", "columns")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    domain: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    coverage: float
    columns: Columns
    def __init__(self, domain: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., coverage: _Optional[float] = ..., columns: _Optional[_Union[Columns, _Mapping]] = ...) -> None: ...

class ColumnPredictions(_message.Message):
    __slots__ = ("point", "upper", "coverage", "model_version")
    POINT_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    point: _containers.RepeatedScalarFieldContainer[float]
    upper: _containers.RepeatedScalarFieldContainer[float]
    coverage: float
    model_version: str
    def __init__(self, point: _Optional[_Iterable[float]] = ..., upper: _Optional[_Iterable[float]] = ..., coverage: _Optional[float] = ..., model_version: _Optional[str] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("predictions", "columns")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    columns: ColumnPredictions
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., columns: _Optional[_Union[ColumnPredictions, _Mapping]] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ("domain",)
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    domain: str
    def __init__(self, domain: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("domain", "version", "coverage", "family", "cold_start", "loaded_at", "features", "observed_coverage", "observed_outcomes", "request_grace")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_GRACE_FIELD_NUMBER: _ClassVar[int]
    domain: str
    version: str
    coverage: float
    family: str
    cold_start: bool
    loaded_at: str
    features: _containers.RepeatedScalarFieldContainer[str]
    observed_coverage: float
    observed_outcomes: int
    request_grace: float
    def __init__(self, domain: _Optional[str] = ..., version: _Optional[str] = ..., coverage: _Optional[float] = ..., family: _Optional[str] = ..., cold_start: _Optional[bool] = ..., loaded_at: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., observed_coverage: _Optional[float] = ..., observed_outcomes: _Optional[int] = ..., request_grace: _Optional[float] = ...) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
