"""The JSON bodies of the API's POST routes, as pydantic models: they check types (strictly: "3" is not a
number, true is not 1, NaN is not a temperature) and give the OpenAPI docs at /docs their schemas. What depends
on the run or the server's limits (a token outside the vocabulary, a prompt past max_input_tokens) is checked by
the routes (app.py), which know both."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class GenerateRequest(BaseModel):
    """Continue a prompt with a language-model run."""

    model_config = _STRICT
    prompt: str = Field(description="the text to continue; every token must be in the run's vocabulary")
    max_tokens: int = Field(100, ge=1, description="how many tokens to generate (at most the server's max_new_tokens)")
    temperature: float = Field(1.0, ge=0, le=100, description="sampling temperature; 0 is greedy decoding")
    top_k: int = Field(0, ge=0, le=1_000_000_000, description="sample among the k most likely tokens; 0 keeps every token")
    top_p: float = Field(1.0, gt=0, le=1, description="sample among the most likely tokens whose probabilities reach p")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="the same seed gives the same text")
    stream: bool = Field(False, description="answer with server-sent events, one per token, then a `done` event")


class GenerateResponse(BaseModel):
    prompt: str
    completion: str = Field(description="the generated text alone")
    text: str = Field(description="prompt and completion, joined as `stackrnn generate` joins them")
    tokens: int
    finish_reason: str


class TextsRequest(BaseModel):
    """One text (`text`) or several (`texts`, run as one batch)."""

    model_config = _STRICT
    text: str | None = Field(None, description="one text")
    texts: list[str] | None = Field(None, description="several texts (at most the server's max_batch)")


class PredictRequest(TextsRequest):
    """Classify texts with a classifier run."""


class Prediction(BaseModel):
    text: str
    label: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    results: list[Prediction]


class TranslateRequest(TextsRequest):
    """Translate sentences with a translation run."""

    beam: int = Field(5, ge=1, le=16, description="beam width; 1 is greedy search")
    max_length: int | None = Field(None, ge=1, description="the most tokens of a translation (default: twice the "
                                   "source's, plus 10; at most the server's max_new_tokens)")
    length_penalty: float = Field(0.6, ge=0, le=10, description="GNMT's length penalty alpha for the beam")
    attention: bool = Field(False, description="also return each target word's attention over the source words")


class AttentionMap(BaseModel):
    source: list[str]
    target: list[str]
    weights: list[list[float]] = Field(description="one row per target word (and <eos>), one column per source word")


class Translation(BaseModel):
    source: str
    translation: str
    unknown: list[str] = Field(description="source words not in the run's vocabulary, read as <unk>")
    attention: AttentionMap | None = None


class TranslateResponse(BaseModel):
    results: list[Translation]


class ActivationsRequest(BaseModel):
    """Read a text through a language-model run and return what `stackrnn inspect` shows: per layer, the units
    that track simple text features best, with their activation at every token."""

    model_config = _STRICT
    text: str = Field(description="the text to read; every token must be in the run's vocabulary")
    units: int = Field(16, ge=1, le=256, description="units per layer to return, most interpretable first")


class ForecastRequest(BaseModel):
    """Forecast series of a forecasting run after the end of its data (or its held-out test or valid steps)."""

    model_config = _STRICT
    series: list[str] | None = Field(None, description="the series' ids (default: every series of the run, if "
                                     "there are at most the server's max_series)")
    horizon: int | None = Field(None, ge=1, description="steps to forecast (default and most: the trained horizon)")
    samples: int = Field(100, ge=1, description="sample paths per series, for a distribution head (at most the "
                         "server's max_samples; the quantile head draws none)")
    split: Literal["valid", "test"] | None = Field(None, description="forecast the held-out steps of this split "
                                                   "(returned as actual) instead of the future")
    history: int = Field(0, ge=0, le=100_000, description="also return this many of each series' last values "
                         "before the forecast")


class Forecast(BaseModel):
    series: str
    timestamps: list[str] | None = Field(description="of the forecast steps (null for series without timestamps)")
    median: list[float | None] = Field(description="the point forecast, each step's 0.5 quantile")
    mean: list[float | None]
    quantiles: dict[str, list[float | None]] = Field(description="each quantile level's values, by level")
    history: list[float | None] = Field(description="the last values before the forecast (null where missing)")
    actual: list[float | None] | None = Field(description="with a split: the held-out values")


class ForecastResponse(BaseModel):
    results: list[Forecast]
