"""healthCheckExprs as Flux evaluates them: cel-go's optional types (`status.?conditions.orValue([])`)
and an evaluation error making the object's status Unknown, with the error, until the timeout."""

import logging

import celpy
import pytest

from tide.shared.cel.optionals import FUNCTIONS, CELSyntaxError, compile_source, rewrite
from tide.shared.cel.sandbox import CelSandbox, Evaluation, ExprError, Limits
from tide.shared.inventory import ObjectRef
from tide.shared.kube.health import (
    MAX_EXPRESSION_LENGTH,
    HealthCheckTimeout,
    HealthTarget,
    InvalidCELExpression,
    compile_exprs,
    object_status,
    wait_for_health,
)
from tide.shared.kube.kstatus import Status, StatusKind

SYLVA = "status.?conditions.orValue([]).exists(c, c.type == 'Ready' && c.status == 'True')"

OBJ = {
    "apiVersion": "example.com/v1",
    "kind": "Widget",
    "metadata": {"name": "w", "namespace": "n", "labels": {"app": "web"}},
    "status": {
        "phase": "Ready",
        "replicas": 0,
        "items": [10, 20],
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("status.phase == 'Ready'", "status.phase == 'Ready'"),  # nothing optional: untouched
        ("a.?b", 'a._opt_sel("b")'),
        ("a . ? b", 'a ._opt_sel("b")'),  # '.' and '?' are two tokens, as in cel-go
        ("a[?'k']", "a._opt_idx('k')"),
        ("a.?b.c", 'a._opt_sel("b")._opt_sel("c")'),  # a chain after an optional stays optional
        ("a.?b.?c[0]", 'a._opt_sel("b")._opt_sel("c")._opt_idx(0)'),
        ("a.?b.orValue(1).c", 'a._opt_sel("b").orValue(1).c'),  # orValue's result is a value
        ("a.?b.or(x.?c).d", 'a._opt_sel("b").or(x._opt_sel("c"))._opt_sel("d")'),
        ("(a.?b).c", '(a._opt_sel("b"))._opt_sel("c")'),
        ("a.?b.size() + c.d", 'a._opt_sel("b").size() + c.d'),
        ("a.?b == c.d", 'a._opt_sel("b") == c.d'),
        ("x ? a.?b : c.d", 'x ? a._opt_sel("b") : c.d'),
        ("a[b.?c.orValue(0)].d", 'a[b._opt_sel("c").orValue(0)].d'),
        ("optional.of(1)", "_opt_of(1)"),
        ("optional.none()", "_opt_none()"),
        ("optional.ofNonZeroValue(x).y", '_opt_of_non_zero(x)._opt_sel("y")'),
        ("a.optional.of(1)", "a.optional.of(1)"),  # a field named optional: not the namespace
        ("'a.?b' + \"c[?d]\" + '''e.?f''' + r'g\\'", "'a.?b' + \"c[?d]\" + '''e.?f''' + r'g\\'"),
        ("'it\\'s a.?b' == x.?y", "'it\\'s a.?b' == x._opt_sel(\"y\")"),
        ("a // c.?d\n.?b", 'a // c.?d\n._opt_sel("b")'),  # comments are left alone
        (
            "l.exists(c, c.?reason.orValue('') == 'x')",
            "l.exists(c, c._opt_sel(\"reason\").orValue('') == 'x')",
        ),
        ("x in [1, 2] && 1.5 > .5", "x in [1, 2] && 1.5 > .5"),
    ],
)
def test_the_rewrite(source: str, expected: str) -> None:
    assert rewrite(source) == expected


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("a.?", "not followed by a field name"),
        ("a.?1", "not followed by a field name"),
        ("[?x]", "optional list elements and map entries are not supported"),
        ("{?'k': v}", "optional list elements and map entries are not supported"),
        ("'unterminated .?b", "unterminated string"),
        ("'one line\n'", "unterminated string"),
    ],
)
def test_malformed_optional_syntax_is_refused(source: str, error: str) -> None:
    with pytest.raises(CELSyntaxError, match=error):
        rewrite(source)


ENV = celpy.Environment()


def evaluate(source: str, obj: dict = OBJ):
    """The expression evaluated as the sandbox's worker does (the raised error, returned)."""
    logging.disable(logging.CRITICAL)  # cel-python logs every evaluation error; only for this call
    try:
        program = ENV.program(compile_source(ENV, source), FUNCTIONS)
        return program.evaluate({k: celpy.json_to_cel(v) for k, v in obj.items()})
    except celpy.CELEvalError as exc:
        return exc
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (SYLVA, True),
        ("status.?nope.orValue([]).exists(c, c.type == 'Ready')", False),
        ("status.?phase.hasValue()", True),
        ("status.?nope.hasValue()", False),
        ("status.?phase.value() == 'Ready'", True),
        ("status.?phase.orValue('x') == 'Ready'", True),
        ("status.?nope.orValue('x') == 'x'", True),
        ("status.?nope.deeper.still.orValue(3) == 3", True),  # none all along the chain
        ("status.?phase.deeper.orValue(3) == 3", True),  # a string has no fields: none
        ("status.?conditions[0].?reason.orValue(3) == 3", True),  # present, then absent
        ("status.?items[1].orValue(0) == 20", True),
        ("status.?items[5].orValue(7) == 7", True),
        ("status[?'items'][?0].orValue(0) == 10", True),
        ("status[?'items'][?-1].hasValue()", False),
        ("metadata.?labels[?'app'].orValue('') == 'web'", True),
        ("metadata.?labels[?'tier'].orValue('none') == 'none'", True),
        ("metadata.?annotations[?'x'].orValue('none') == 'none'", True),
        ("status.?nope.or(status.?phase).value() == 'Ready'", True),
        ("status.?phase.or(optional.of('z')).value() == 'Ready'", True),
        ("optional.none().orValue(1) == 1", True),
        ("optional.of(2).value() == 2", True),
        ("optional.of(status).phase.orValue('') == 'Ready'", True),
        ("optional.none() == optional.none()", True),
        ("optional.of(1) == optional.of(1)", True),
        ("optional.of(1) == optional.none()", False),
        ("optional.ofNonZeroValue(status.replicas).hasValue()", False),
        ("optional.ofNonZeroValue('').hasValue()", False),
        ("optional.ofNonZeroValue([]).hasValue()", False),
        ("optional.ofNonZeroValue(status.items).hasValue()", True),
        ("status.conditions.exists(c, c.?reason.orValue('') == '')", True),
        ("(status.?nope).x.orValue(1) == 1", True),
        ("'a.?b' == 'a' + '.?b'", True),
    ],
)
def test_optional_forms_evaluate_as_cel_go(source: str, expected: bool) -> None:
    assert evaluate(source) == celpy.celtypes.BoolType(expected)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("status.?nope.value()", "optional.none() dereference"),
        ("status.phase.hasValue()", "no such overload"),  # not an optional
        ("status.?items['x'].hasValue()", "unsupported index type 'StringType' in list"),
        ("spec.?x.orValue(1) == 1", "undeclared reference to 'spec'"),  # cel-go: no such attribute(s)
    ],
)
def test_optional_errors(source: str, error: str) -> None:
    result = evaluate(source)
    assert isinstance(result, celpy.CELEvalError) and error in str(result.args[0])


def entry(current: str, **more: str) -> list[dict]:
    return [{"apiVersion": "example.com/v1", "kind": "Widget", "current": current, **more}]


def test_the_sylva_expression_with_and_without_conditions() -> None:
    exprs = compile_exprs(entry(SYLVA))
    assert object_status(OBJ, exprs).status == StatusKind.CURRENT
    waiting = {**OBJ, "status": {"phase": "Pending"}}  # no conditions yet: not current, no error
    assert object_status(waiting, exprs) == Status(
        StatusKind.IN_PROGRESS, "waiting for healthCheckExprs to be current"
    )
    not_ready = {**OBJ, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert object_status(not_ready, exprs).status == StatusKind.IN_PROGRESS
    # No status at all: `status` is no variable, as for cel-go (`no such attribute(s): status`).
    fresh = {k: v for k, v in OBJ.items() if k != "status"}
    assert object_status(fresh, exprs) == Status(
        StatusKind.UNKNOWN, f"failed to evaluate the CEL expression '{SYLVA}': no such attribute(s): status"
    )


@pytest.mark.parametrize(
    ("current", "obj", "message"),
    [
        (
            "status.conditions.exists(c, c.type == 'Ready')",
            {**OBJ, "status": {"phase": "Pending"}},
            "failed to evaluate the CEL expression '{}': no such key: conditions",
        ),
        ("status['nope'] == 1", OBJ, "failed to evaluate the CEL expression '{}': no such key: nope"),
        ("status.items[5] == 1", OBJ, "failed to evaluate the CEL expression '{}': index out of bounds"),
        ("status.phase + 1 == 2", OBJ, "failed to evaluate the CEL expression '{}': no such overload"),
        ("status.phase", OBJ, "failed to evaluate CEL expression as boolean: '{}'"),
        ("status.?phase", OBJ, "failed to evaluate CEL expression as boolean: '{}'"),
    ],
)
def test_an_evaluation_error_makes_the_status_unknown_with_flux_words(current, obj, message) -> None:
    assert object_status(obj, compile_exprs(entry(current))) == Status(
        StatusKind.UNKNOWN, message.format(current)
    )


def test_the_first_error_in_flux_order_decides() -> None:
    """inProgress, failed, current: an error in an earlier one is the status, as in Flux."""
    exprs = compile_exprs(entry("true", inProgress="status.nope == 1"))
    assert object_status(OBJ, exprs).status == StatusKind.UNKNOWN
    exprs = compile_exprs(entry("status.nope == 1", inProgress="false", failed="true"))
    assert object_status(OBJ, exprs).status == StatusKind.FAILED


async def test_the_timeout_names_the_evaluation_error() -> None:
    exprs = compile_exprs(entry("status.conditions.exists(c, c.type == 'Ready')"))
    target = HealthTarget(ObjectRef("example.com", "Widget", "n", "w"), "example.com/v1")

    async def get(_: HealthTarget) -> dict:
        return {**OBJ, "status": {}}

    with pytest.raises(HealthCheckTimeout) as timeout:
        await wait_for_health([target], get, exprs, limit=0, poll=0)
    assert str(timeout.value) == (
        "timeout waiting for: [Widget/n/w status: 'Unknown': failed to evaluate the CEL expression "
        "'status.conditions.exists(c, c.type == 'Ready')': no such key: conditions]"
    )


@pytest.mark.parametrize(
    "source",
    [
        "status.?conditions.orValue([]).exists(c, c.type == 'Ready'",  # unbalanced
        "status.?conditions.orValue([]) &&",
        "status.?",
        "[?status.phase]",
    ],
)
def test_syntax_errors_still_stall_with_invalid_cel_expression(source: str) -> None:
    with pytest.raises(InvalidCELExpression, match=r"failed to parse Widget\.example\.com/v1 current"):
        compile_exprs(entry(source))


def test_the_sandbox_evaluates_optionals_and_reports_errors() -> None:
    box = CelSandbox(Limits(cpu_seconds=2))
    try:
        no_conditions = {**OBJ, "status": {"phase": "Pending"}}
        no_status = {k: v for k, v in OBJ.items() if k != "status"}
        verdicts = box.evaluate(
            [
                Evaluation("a", {"current": SYLVA}, OBJ),
                Evaluation("b", {"current": SYLVA}, no_conditions),
                Evaluation("c", {"current": SYLVA}, no_status),
                Evaluation("d", {"current": "status.?phase.value() == 'x'"}, no_conditions),
                Evaluation("e", {"current": "status.?nope.value()"}, OBJ),
            ]
        )
        assert verdicts == [
            "current",
            None,
            ExprError(f"failed to evaluate the CEL expression '{SYLVA}': no such attribute(s): status"),
            None,
            ExprError(
                "failed to evaluate the CEL expression 'status.?nope.value()': optional.none() dereference"
            ),
        ]
    finally:
        box.close()


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("(" * 250 + "true" + ")" * 250, False),
        ("(" * 251 + "true" + ")" * 251, True),
        ("status" + ".?a" * 250 + ".orValue(1) == 1", True),  # 251 links in one chain
        ("status" + ".a" * 200 + ".size() + status" + ".a" * 200 + ".size() > 0", False),
        ("[" * 251 + "]" * 251 + " == []", True),
        ("f(" * 251 + ")" * 251, True),
    ],
)
def test_nesting_past_the_limit_is_a_syntax_error(source: str, refused: bool) -> None:
    if refused:
        with pytest.raises(InvalidCELExpression, match="nests deeper than 250 levels"):
            compile_exprs(entry(source))
    else:
        compile_exprs(entry(source))


@pytest.mark.parametrize(
    "source",
    [
        "(" * 8000 + "true" + ")" * 8000,
        "[" * 8000 + "]" * 8000 + " == []",
        "status" + ".?a" * 5000 + ".orValue(1) == 1",
        "status" + "[?0]" * 3000 + ".orValue(1) == 1",
        "'" * 16000,  # a string left open at every quote
        "'''" + "\\'" * 7000,
        "a" + ".?" * 8000,
    ],
)
def test_pathological_expressions_are_refused_or_bounded(source: str) -> None:
    """A deeply nested or hugely chained expression: the rewrite reads it once, without recursion;
    the parse refuses it (or the sandbox's limits bound its evaluation)."""
    assert len(source) <= MAX_EXPRESSION_LENGTH
    try:
        compiled = compile_exprs(entry(source))
    except InvalidCELExpression:
        compiled = None
    if compiled is not None:
        box = CelSandbox(Limits(cpu_seconds=1))
        try:
            status = object_status(OBJ, compiled, sandbox=box)
            assert status.status in (StatusKind.CURRENT, StatusKind.IN_PROGRESS, StatusKind.UNKNOWN)
        finally:
            box.close()
