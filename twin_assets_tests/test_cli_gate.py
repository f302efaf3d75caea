"""`twin gate`: a failing deploy gate is a verdict (exit 0), any other failed step is not (exit 1)."""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg

from twin_assets.cli import run_verdict


class _Instance:
    """The two instance calls `run_verdict` makes, over a scripted run."""

    def __init__(self, failed_steps: list[str], gate_passed: bool | None, has_run: bool = True):
        self.failed_steps, self.gate_passed, self.has_run = failed_steps, gate_passed, has_run

    def get_runs(self, filters, limit):
        assert filters.tags == {"dagster/partition": "maya"} and limit == 1
        status = dg.DagsterRunStatus.FAILURE if self.failed_steps else dg.DagsterRunStatus.SUCCESS
        return [SimpleNamespace(run_id="abcdef0123456789", status=status)] if self.has_run else []

    def all_logs(self, run_id, of_type):
        records = [
            SimpleNamespace(
                dagster_event=SimpleNamespace(
                    event_type=dg.DagsterEventType.STEP_FAILURE, step_key=step, event_specific_data=None
                )
            )
            for step in self.failed_steps
        ]
        if self.gate_passed is not None:
            check = SimpleNamespace(
                check_name="deploy_gate",
                passed=self.gate_passed,
                description="dpo v1: degeneration 0.37 vs base 0.20",
            )
            records.append(
                SimpleNamespace(
                    dagster_event=SimpleNamespace(
                        event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                        step_key="evaluation_report",
                        event_specific_data=check,
                    )
                )
            )
        return records


def test_only_the_gate_failing_is_a_verdict():
    code, lines = run_verdict(_Instance(["evaluation_report"], gate_passed=False), "maya")
    assert code == 0
    assert any(line.startswith("deploy gate: FAILED") and "degeneration" in line for line in lines)


def test_another_failed_step_is_an_error():
    code, lines = run_verdict(_Instance(["evaluation_report", "chunks"], gate_passed=False), "maya")
    assert code == 1 and "failed steps: chunks, evaluation_report" in lines


def test_evaluation_crashing_before_the_gate_is_an_error():
    assert run_verdict(_Instance(["evaluation_report"], gate_passed=None), "maya")[0] == 1


def test_a_passing_run_and_a_missing_run():
    code, lines = run_verdict(_Instance([], gate_passed=True), "maya")
    assert code == 0 and "deploy gate: PASSED" in lines[1]
    assert run_verdict(_Instance([], gate_passed=None, has_run=False), "maya")[0] == 1
