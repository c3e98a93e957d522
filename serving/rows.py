"""One schema for a model's rows: pydantic models generated from the Predictor's input schema.

``RowSchema(schema, missing=..., missing_columns=...)`` builds, with ``pydantic.create_model``,
a ``Row`` model (one field per input column, aliased to the column's name) and a ``PredictRequest``
model (``{"rows": [Row, ...]}``). The same models check every request body (``/predict``,
``/predict_proba``, CSV bodies and the V2 ``infer`` tensors once turned into rows) and produce the
OpenAPI document, so what ``/docs`` says and what the endpoint accepts cannot drift apart.

What a cell may hold, per column kind:

* numeric: a JSON number, or a string that reads as one (``"39"``, ``"1.5e3"``); never a boolean.
* any other kind (categorical, boolean, text, datetime): a string, number or boolean. A level never
  seen in training is accepted (the model treats it as rare) and reported in ``unknown_categories``.
* missing: ``null``, an absent key, ``""`` or the missing-value marker ``"?"`` (as training read
  its table). What that means is the column's *missing policy*:

  - ``impute``: predicted like a missing value in training (the fitted imputation). The default
    for columns that were sometimes missing in training.
  - ``reject``: a 422 naming the row and column (``rows[3].age``). The default for *required*
    columns (never missing in training, so the model has no evidence of what absence means);
    ``AppArgs.missing="impute"`` changes that default and ``AppArgs.missing_columns`` sets it per
    column.

Columns the model does not use are accepted (any scalar) and reported in ``ignored_columns``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from automl.schema import InputSchema
from serving.cells import (
    MISSING_REJECTED,
    cell_reader,
    example_value,
    extra_cell,
    json_schema,
    kind_name,
    read_number,
    read_scalar,
    safe_csv_cell,
)

MissingPolicy = Literal["reject", "impute"]
POLICIES: tuple[str, ...] = ("reject", "impute")
#: at most this many problems are listed in one error response
MAX_ERRORS = 20

# The number-in-a-string and missing-marker patterns are checked with re.fullmatch and documented as
# JSON Schema `pattern`s anchored with ^...$ (where `$` is the end of the text, as fullmatch reads it:
# " ?\n" is not a missing marker in either).
_Extra = Annotated[
    Any, PlainValidator(extra_cell), WithJsonSchema({"type": ["string", "number", "boolean", "null"]})
]


class _RowBase(BaseModel):
    # Extra columns are accepted and ignored (reported back), but must still be scalars.
    model_config = ConfigDict(extra="allow", populate_by_name=False)
    __pydantic_extra__: dict[str, _Extra]


@dataclass
class RowsReport:
    ignored_columns: list[str] = field(default_factory=list)
    unknown_categories: dict[str, list[str]] = field(default_factory=dict)


class RequestError(Exception):
    """A request that cannot be served as sent: a 4xx with a message naming the field(s)."""

    def __init__(self, status: int, errors: list[dict[str, str]], detail: str | None = None) -> None:
        self.status = status
        self.errors = errors[:MAX_ERRORS]
        self.detail = detail or "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)
        super().__init__(self.detail)

    @classmethod
    def one(cls, status: int, field_: str, message: str) -> RequestError:
        return cls(status, [{"field": field_, "message": message}])

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "errors": self.errors}


def resolve_policies(
    schema: InputSchema, missing: str = "reject", overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """column -> missing policy: ``missing`` for required columns, ``impute`` for the others,
    then ``overrides``. Raises ValueError naming an unknown column or policy."""
    if missing not in POLICIES:
        raise ValueError(f"missing policy must be one of {list(POLICIES)}; got {missing!r}")
    out = {c.name: (missing if c.required else "impute") for c in schema.columns}
    for col, policy in (overrides or {}).items():
        if col not in out:
            raise ValueError(
                f"missing_columns names {col!r}, not an input column; the columns are {list(out)}"
            )
        if policy not in POLICIES:
            raise ValueError(f"missing policy of {col!r} must be one of {list(POLICIES)}; got {policy!r}")
        out[col] = policy
    return out


class RowSchema:
    """The generated request models of one Predictor and the checks made with them."""

    def __init__(
        self, schema: InputSchema, missing: str = "reject", missing_columns: dict[str, str] | None = None
    ) -> None:
        self.schema = schema
        self.policies = resolve_policies(schema, missing, missing_columns)
        self.names = schema.names
        self._known = {
            c.name: set(c.categories)
            for c in schema.columns
            if c.kind == "categorical" and c.categories is not None
        }
        fields: dict[str, Any] = {}
        for i, spec in enumerate(schema.columns):
            policy = self.policies[spec.name]
            read = read_number if spec.kind == "numeric" else read_scalar
            cell = Annotated[
                Any, PlainValidator(cell_reader(read, policy)), WithJsonSchema(json_schema(spec, policy))
            ]
            default = ... if policy == "reject" else None
            # python names are c0, c1, ... (a column may be called `model_config` or `class`)
            fields[f"c{i}"] = (cell, Field(default, alias=spec.name))
        self.Row: type[BaseModel] = create_model("Row", __base__=_RowBase, **fields)
        example = {c.name: example_value(c) for c in schema.columns}
        self.PredictRequest: type[BaseModel] = create_model(
            "PredictRequest",
            __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rows": [example]}]}),
            rows=(list[self.Row], Field(min_length=1, description="one object per row: {column: value}")),
        )
        self._rows = TypeAdapter(list[self.Row])
        self.csv_example = (
            ",".join(safe_csv_cell(c) for c in self.names)
            + "\n"
            + ",".join(safe_csv_cell(v) for v in example.values())
            + "\n"
        )

    # -- checks ------------------------------------------------------------------------------------
    def check_document(self, doc: Any) -> tuple[list[dict[str, Any]], RowsReport]:
        """A parsed JSON body ``{"rows": [...]}`` -> clean rows (every input column present)."""
        self._check_columns_present(doc.get("rows") if isinstance(doc, dict) else None)
        try:
            parsed = self.PredictRequest.model_validate(doc)
        except ValidationError as exc:
            raise RequestError(422, _errors(exc)) from None
        return self._clean(parsed.rows)

    def check_rows(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], RowsReport]:
        """Rows from a CSV body or V2 tensors -> clean rows; errors name ``rows[i].column``."""
        if not rows:
            raise RequestError.one(422, "rows", "empty: give at least one row")
        self._check_columns_present(rows)
        try:
            parsed = self._rows.validate_python(rows)
        except ValidationError as exc:
            raise RequestError(422, _errors(exc, prefix="rows")) from None
        return self._clean(parsed)

    def _check_columns_present(self, rows: Any) -> None:
        """A column that must have a value and is absent from every row: one error naming it."""
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            return  # the models report what is wrong with the shape
        seen: set[str] = set()
        for r in rows:
            seen.update(r)
        absent = [c for c in self.names if self.policies[c] == "reject" and c not in seen]
        if absent:
            raise RequestError(422, [{"field": c, "message": "required column is missing"} for c in absent])

    def _clean(self, parsed: list[BaseModel]) -> tuple[list[dict[str, Any]], RowsReport]:
        # fields are c0, c1, ... in column order: cheaper than model_dump(by_alias=True)
        rows = [dict(zip(self.names, r.__dict__.values())) for r in parsed]
        report = RowsReport()
        extra: dict[str, None] = {}
        for r, row in zip(parsed, rows):
            if r.__pydantic_extra__:
                extra.update(dict.fromkeys(r.__pydantic_extra__))
                row.update(r.__pydantic_extra__)
        report.ignored_columns = list(extra)
        for col, known in self._known.items():
            unknown = {lv for r in rows if (lv := _level(r[col])) is not None} - known
            if unknown:
                report.unknown_categories[col] = sorted(unknown)[:20]
        return rows, report

    # -- documentation -----------------------------------------------------------------------------
    def openapi_components(self) -> dict[str, Any]:
        """``components.schemas`` entries for ``PredictRequest`` and ``Row``."""
        doc = self.PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = doc.pop("$defs", {})
        return {"PredictRequest": doc, **defs}


def _level(v: Any) -> str | None:
    """A value as a category label, as training spelled levels (1.0 -> '1')."""
    if v is None:
        return None
    if type(v) is float and v.is_integer():
        return str(int(v))
    return str(v)


def _errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    out = []
    for e in exc.errors(include_url=False):
        loc = [prefix] if prefix else []
        loc += list(e["loc"])
        name = ""
        for part in loc:
            name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
        message = e["msg"]
        if e["type"] == "missing" and len(loc) >= 3:
            message = "required value is missing: " + MISSING_REJECTED.split("; ", 1)[1]
        elif e["type"] == "extra_forbidden":
            message = "unknown field; the body takes only 'rows'"
        elif e["type"] == "too_short" and name == "rows":
            message = "empty: give at least one row"
        elif e["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected an object, got {_json_kind(e.get('input'))}"
        elif e["type"] == "list_type":
            message = f"expected a list of objects, got {_json_kind(e.get('input'))}"
        out.append({"field": name or "body", "message": message})
        if len(out) >= MAX_ERRORS:
            break
    return out


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return kind_name(value)
