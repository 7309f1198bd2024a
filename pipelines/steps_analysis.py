"""Job kinds over the analysis areas: layer search, unit metrics, the encoder comparison report.

Kept apart from `pipelines.steps` so the core job kinds work even where an analysis module is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from pipelines import params as P
from pipelines.steps import StepContext, resolve, step


@dataclass
class SearchParams:
    corpus: P.CorpusRef
    encoder: Annotated[str, Field(max_length=500)]
    layers: P.Layers = None  # "12-18"; empty: every layer of the encoder
    ks: list[Annotated[int, Field(ge=2, le=65_536)]] = field(default_factory=lambda: [100])
    seed: P.Seed = 0


@step("search", SearchParams)
def run_search(p: SearchParams, ctx: StepContext) -> dict:
    """Score every layer (and k) of one encoder on a corpus with ABX, PNMI and silhouette; name the best layer."""
    from obt_eval.corpus.manifest import Corpus
    from obt_eval.search import SearchConfig, search_layers
    from obt_eval_cli.common import parse_int_list

    ctx.stage(0, 1, f"search {p.encoder} on {p.corpus}")
    corpus = Corpus.open(resolve(ctx.workspace, p.corpus, "corpora"), ctx.workspace)
    result = search_layers(corpus, p.encoder, parse_int_list(p.layers), ctx.workspace,
                           SearchConfig(ks=list(p.ks), seed=p.seed, device=ctx.device))
    return {"results": str(result.path), "best_layer": result.best_layer, "best_metric": result.best_metric,
            "best_score": result.best_score}


@dataclass
class MetricsParams:
    units: P.UnitsRef  # a units folder (or its name under workspace/units)


@step("metrics", MetricsParams)
def run_metrics(p: MetricsParams, ctx: StepContext) -> dict:
    """Every unit metric of one units store (purity, PNMI, silhouette, bitrate, unit ABX, speaker probe)."""
    from obt_eval.metrics.unit_report import unit_metrics

    ctx.stage(0, 1, "unit metrics")
    path = resolve(ctx.workspace, p.units, "units")
    report = unit_metrics(path, workspace=ctx.workspace)
    return {"metrics": str(path / "metrics.json"), "computed": sorted(k for k in report if k != "not_computed")}


@dataclass
class CompareParams:
    corpus: P.Name  # the corpus name the searches were run on
    encoders: list[Annotated[str, Field(max_length=500)]] | None = None  # default: every encoder searched on it


@step("compare", CompareParams, gpu=False)
def run_compare(p: CompareParams, ctx: StepContext) -> dict:
    """The encoder comparison report (table, plots, sources) from the corpus's search results."""
    from obt_eval.report.compare import compare

    ctx.stage(0, 1, f"compare encoders on {p.corpus}")
    result = compare(p.corpus, ctx.workspace, p.encoders)
    return {"out": str(result.out_dir), **result.files}
