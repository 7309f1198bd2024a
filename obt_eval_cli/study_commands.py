"""CLI of the study area: `obt-eval study create|list|invite|results|export|power` and `obt-eval stats`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obt_eval_cli.common import JsonOpt, WorkspaceOpt, report, workspace

DbOpt = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL (default: $OBT_EVAL_DB or the workspace's SQLite).")
]
ExcludeOpt = Annotated[bool, typer.Option("--exclude-flagged", help="Leave raters flagged by screening out.")]
ExcludeRaterOpt = Annotated[
    list[str] | None, typer.Option("--exclude-rater", help="Leave this rater out (repeatable).")
]


def _open(db_url: str | None, ws: Path | None):  # noqa: ANN202 — db.Database, imported lazily
    from db import open_database

    return open_database(db_url, workspace(ws).root)


def _human_results(res: dict) -> str:
    lines = [f"{res['n_ratings']} ratings, {res['n_raters']} raters, {res['n_utterances']} utterances"
             + (f"; excluded: {', '.join(res['excluded_raters'])}" if res["excluded_raters"] else "")]
    for s in res["systems"]:
        lo, hi = s["ci95"]
        lines.append(f"  {s['system']:<16} MOS {s['mos']:.2f}  95% CI [{lo:.2f}, {hi:.2f}]  n={s['n']}  "
                     f"sd={s['sd']:.2f}")
    for c in res["comparisons"]:
        def fmt(p: float | None) -> str:
            return "n/a" if p is None else f"{p:.3g}"
        lines.append(f"  {c['a']} - {c['b']}: diff {c['diff']:+.2f}  p_mixed {fmt(c['p_mixed'])}  p_holm "
                     f"{fmt(c['p_holm'])}  paired t {fmt(c['p_paired_t'])}  Wilcoxon {fmt(c['p_wilcoxon'])}")
        lines.append(f"      model: {c['model']}")
    flagged = [r for r in res["screening"] if r.get("flagged")]
    if flagged:
        lines.append("  flagged raters: " + "; ".join(f"{r['rater']} ({r['reasons']})" for r in flagged))
    return "\n".join(lines)


def _stats_config(exclude_flagged: bool, exclude_rater: list[str] | None):  # noqa: ANN202
    from obt_eval.study.statistics import StatsConfig

    return StatsConfig(exclude_flagged=exclude_flagged, exclude_raters=tuple(exclude_rater or ()))


def register(app: typer.Typer) -> None:
    """Adds `study …` and `stats` to `app`."""
    study = typer.Typer(help="Blinded A/B listening studies: create, invite raters, results, export.",
                        no_args_is_help=True)
    app.add_typer(study, name="study")

    @study.command("create")
    def create(
        name: Annotated[str, typer.Option("--name", help="Study name (letters, digits, - _ .).")],
        system: Annotated[list[str], typer.Option("--system", help="NAME=DIR of WAVs named by utterance id (repeat).")],
        reference: Annotated[str | None, typer.Option("--reference", help="NAME=DIR of natural speech.")] = None,
        target_ratings: Annotated[int, typer.Option("--target-ratings", help="Ratings per stimulus.")] = 10,
        block_size: Annotated[int, typer.Option("--block-size", help="Regular trials per rater block.")] = 10,
        max_blocks: Annotated[int | None, typer.Option("--max-blocks-per-rater")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Design seed (default: random, stored).")] = None,
        loudness: Annotated[float, typer.Option("--loudness", help="Target LUFS for every clip.")] = -23.0,
        question: Annotated[str | None, typer.Option("--question", help="The rating question.")] = None,
        no_preference: Annotated[bool, typer.Option("--no-preference", help="Do not ask A/B preference.")] = False,
        reference_in_pairs: Annotated[bool, typer.Option("--reference-in-pairs/--reference-qc-only")] = True,
        allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Use the utterances all share.")] = False,
        ws: WorkspaceOpt = None,
        db_url: DbOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Create a study from each system's stimuli: checks coverage and rates, normalises loudness, designs trials.

        Example: obt-eval study create --name pilot --system xlsr53=stim/xlsr53 --system mms-300m=stim/mms300m
        --reference natural=corpus/wavs
        """
        from db.studies import StimulusRecord, SystemRecord, TrialRecord, create_study, list_studies
        from obt_eval.errors import BadInputError
        from obt_eval.study.config import DesignConfig, LoudnessConfig, Protocol
        from obt_eval.study.prepare import prepare_study
        from obt_eval.study.sources import parse_system_spec

        wsp = workspace(ws)
        database = _open(db_url, ws)
        with database.session() as session:  # fail early, before rendering audio, if the name is taken
            if name in {row["name"] for row in list_studies(session)}:
                raise BadInputError(f"a study named {name!r} already exists", "choose another --name")
        protocol = Protocol()
        if question:
            protocol = Protocol(question=question)
        if no_preference:
            protocol = Protocol(question=protocol.question, preference_question=None, preference_options=())
        prepared = prepare_study(
            name, [parse_system_spec(s) for s in system], parse_system_spec(reference) if reference else None,
            workspace=wsp, protocol=protocol,
            design=DesignConfig(target_ratings=target_ratings, trials_per_block=block_size, seed=seed,
                                max_blocks_per_rater=max_blocks, include_reference_in_pairs=reference_in_pairs),
            loudness=LoudnessConfig(target_lufs=loudness), allow_partial=allow_partial,
        )
        with database.session() as session:
            create_study(session, prepared.name, prepared.protocol, prepared.design, prepared.settings,
                         str(prepared.stimuli_dir.resolve()), prepared.sample_rate,
                         [SystemRecord(**s) for s in prepared.systems],
                         [StimulusRecord(**s) for s in prepared.stimuli],
                         [TrialRecord(**t) for t in prepared.trials])
        summary = {"study": name, "stimuli_dir": str(prepared.stimuli_dir), "stimuli": len(prepared.stimuli),
                   "sample_rate": prepared.sample_rate, "loudness_lufs": prepared.settings["loudness_target_lufs"],
                   "warnings": prepared.warnings} | prepared.design["summary"]
        report(summary, as_json, f"created study {name!r}: {summary['trials']} trials in {summary['blocks']} blocks, "
               f"{summary['stimuli']} stimuli at {summary['loudness_lufs']:.1f} LUFS"
               + "".join(f"\n  warning: {w}" for w in prepared.warnings))

    @study.command("list")
    def list_(ws: WorkspaceOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False) -> None:
        """List studies with their progress. Example: obt-eval study list"""
        from db.studies import list_studies

        with _open(db_url, ws).session() as session:
            rows = list_studies(session)
        report({"studies": rows}, as_json, "\n".join(
            f"{r['name']}: {r['trials_rated']}/{r['trials']} trials rated, {r['raters']} raters, "
            f"systems {', '.join(r['systems'])}" for r in rows) or "no studies yet")

    @study.command("invite")
    def invite(name: Annotated[str, typer.Argument(help="Study name.")],
               count: Annotated[int, typer.Option("--count", "-n", help="How many raters to invite.")] = 1,
               grow: Annotated[bool, typer.Option("--grow", help="Add blocks (replicating the design) when the "
                                                  "invited raters outnumber the free blocks.")] = False,
               ws: WorkspaceOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False) -> None:
        """Create pseudonymous raters with secret invite tokens. Example: obt-eval study invite pilot -n 5

        Each rater needs a free block of trials; inviting more raters than there are free blocks warns (those
        raters would find the study full), and --grow adds the blocks they need (-n 0 --grow: only grow)."""
        from db.capacity import invite as invite_with_capacity
        from db.studies import get_study

        with _open(db_url, ws).session() as session:
            made = invite_with_capacity(session, get_study(session, name), count, grow=grow)
        for warning in made.warnings:
            typer.echo(f"warning: {warning}", err=True)
        c = made.capacity
        lines = [f"{i['pseudonym']}  {i['invite_token']}" for i in made.invites]
        if made.added_blocks:
            lines.append(f"grew the study by {made.added_blocks} block(s) to {c.blocks}")
        lines.append(f"{c.raters} raters, {c.blocks} blocks ({c.free_blocks} free)")
        report({"study": name} | made.as_dict(), as_json, "\n".join(lines))

    @study.command("results")
    def results(name: Annotated[str, typer.Argument(help="Study name.")], exclude_flagged: ExcludeOpt = False,
                exclude_rater: ExcludeRaterOpt = None, ws: WorkspaceOpt = None, db_url: DbOpt = None,
                as_json: JsonOpt = False) -> None:
        """MOS per system, paired comparisons (LMM, t, Wilcoxon, Holm), preferences, rater screening.

        Example: obt-eval study results pilot --json
        """
        from db.studies import get_study, ratings_frame
        from obt_eval.study.statistics import analyse

        with _open(db_url, ws).session() as session:
            st = get_study(session, name)
            df = ratings_frame(session, st)
        if df.empty:
            from obt_eval.errors import BadInputError

            raise BadInputError(f"study {name!r} has no submitted ratings yet",
                                "invite raters (`obt-eval study invite`) and let them rate first")
        res = {"study": name} | analyse(df, _stats_config(exclude_flagged, exclude_rater))
        report(res, as_json, _human_results(res))

    @study.command("export")
    def export(name: Annotated[str, typer.Argument(help="Study name.")],
               out: Annotated[Path, typer.Argument(help="Output CSV (the protocol goes to OUT.protocol.json).")],
               ws: WorkspaceOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False) -> None:
        """Write every submitted rating as long-format CSV. Example: obt-eval study export pilot pilot.csv"""
        import pandas as pd

        from db.studies import get_study, ratings_frame
        from obt_eval.study.ratings_csv import EXPORT_COLUMNS, protocol_path, write_ratings_csv

        with _open(db_url, ws).session() as session:
            st = get_study(session, name)
            df = ratings_frame(session, st)
            snapshot = {"study": st.name, "protocol": st.protocol, "design": st.design, "settings": st.settings,
                        "systems": [{"name": s.name, "role": s.role, "meta": s.meta} for s in st.systems]}
        if df.empty:
            df = pd.DataFrame(columns=EXPORT_COLUMNS)
        write_ratings_csv(df, out, snapshot)
        report({"study": name, "csv": str(out), "protocol": str(protocol_path(out)), "rows": len(df)}, as_json,
               f"wrote {len(df)} ratings to {out} (protocol: {protocol_path(out)})")

    @study.command("power")
    def power(
        diff: Annotated[float, typer.Option("--diff", help="MOS difference to detect.")] = 0.3,
        raters: Annotated[str, typer.Option("--raters", help="Rater counts, e.g. 10,20,30.")] = "10,20,30",
        utterances: Annotated[str, typer.Option("--utterances", help="Utterance counts, e.g. 20,40.")] = "20,40",
        per_rater: Annotated[int | None, typer.Option("--per-rater", help="Utterances per rater.")] = None,
        sims: Annotated[int, typer.Option("--sims", help="Simulated studies per design.")] = 100,
        pilot: Annotated[Path | None, typer.Option("--pilot", help="Ratings CSV to estimate variances from.")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        as_json: JsonOpt = False,
    ) -> None:
        """Power of the primary test for designs of raters × utterances, by simulation.

        Example: obt-eval study power --diff 0.3 --raters 10,20 --utterances 20,40 --sims 100
        """
        from obt_eval.study.power import components_from_fit, plan
        from obt_eval.study.simulate import VarianceComponents
        from obt_eval_cli.common import parse_int_list

        sd = VarianceComponents()
        if pilot is not None:
            from obt_eval.study.ratings_csv import read_ratings_csv
            from obt_eval.study.statistics import analyse

            comps = [c for c in analyse(read_ratings_csv(pilot))["comparisons"] if c.get("variance_components")]
            if comps:
                sd = components_from_fit(comps[0]["variance_components"])
        res = plan(diff, parse_int_list(raters) or [], parse_int_list(utterances) or [], per_rater, sd, sims, seed=seed)
        best = res["recommended"]
        report(res, as_json, "\n".join(
            [f"power to detect {diff} MOS (α={res['alpha']}, {sims} simulated studies each):"]
            + [f"  {d['raters']:>3} raters × {d['utterances']:>3} utterances ({d['per_rater']} each): {d['power']:.2f}"
               for d in res["designs"]]
            + [f"smallest design with power ≥ {res['target_power']}: "
               + (f"{best['raters']} raters × {best['utterances']} utterances" if best else "none in the grid")]))

    @app.command("stats")
    def stats_(ratings: Annotated[Path, typer.Argument(help="Long-format ratings CSV (rater, utterance…)")],
               exclude_flagged: ExcludeOpt = False, exclude_rater: ExcludeRaterOpt = None,
               as_json: JsonOpt = False) -> None:
        """Statistics of a ratings CSV (same analysis as `study results`). Example: obt-eval stats pilot.csv --json"""
        from obt_eval.study.ratings_csv import read_ratings_csv
        from obt_eval.study.statistics import analyse

        df = read_ratings_csv(ratings)
        res = {"ratings": str(ratings)} | analyse(df, _stats_config(exclude_flagged, exclude_rater))
        report(res, as_json, _human_results(res))
