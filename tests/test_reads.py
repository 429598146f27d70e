"""Every asset reads only what is declared upstream of it.

An asset reads another's output in three ways: `materialize_first(p, "<name>")` around the ML code
that reads its FiftyOne fields or files, and `parent_metadata` / `parent_data_version` of
`p.key("<name>")` out of the event log. This test finds each such read in the asset's body and in
the helpers it calls (the name given there, or passed down by the caller), lists them per asset, and
checks each against the asset's ancestors in a graph that declares every optional part (CLIP as an
outlier space, a label budget), so that Dagster runs it after what it reads and again when that
changes.
"""

import ast
from pathlib import Path

import dagster as dg

from mnist_assets.definitions import defs
from mnist_assets.ml.core import field_names
from mnist_assets.pipeline import build_pipeline_defs, declared_spec

ASSETS = Path(__file__).resolve().parents[1] / "mnist_assets" / "assets"
READERS = {"materialize_first": 1, "parent_metadata": 1, "parent_data_version": 1}  # the argument naming what is read


def _named(node: ast.AST) -> tuple[str, str] | None:
    """("asset", name) for "name", p.key("name") or a name of ml/core/field_names.py; ("param", name)
    for another bare variable."""
    if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "key" and node.args:
        node = node.args[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ("asset", node.value)
    if isinstance(node, ast.Name):
        constant = getattr(field_names, node.id, None)
        return ("asset", constant) if isinstance(constant, str) else ("param", node.id)
    return None


class Function:
    """One function of assets/ (nested ones included in their outer function's body too)."""

    def __init__(self, node: ast.FunctionDef):
        self.params = [arg.arg for arg in node.args.args]
        self.reads, self.param_reads, self.calls, self.asset = set(), set(), [], None
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                name = sub.func.id if isinstance(sub.func, ast.Name) else getattr(sub.func, "attr", None)
                if name in READERS and len(sub.args) > READERS[name]:
                    named = _named(sub.args[READERS[name]])
                    if named and named[0] == "asset":
                        self.reads.add(named[1])
                    elif named and named[1] in self.params:
                        self.param_reads.add(named[1])
                elif name:
                    self.calls.append((name, sub))
            if isinstance(sub, ast.FunctionDef):
                for decorator in sub.decorator_list:
                    if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "asset":
                        # `@p.asset("name", ...)` (common.Pipeline.asset), or `@dg.asset(key=p.key("name"), ...)`
                        key = decorator.args[0] if decorator.args else next(kw.value for kw in decorator.keywords if kw.arg == "key")
                        if sub is node or _named(key)[0] == "param":  # its own asset, or a factory's (key from a parameter)
                            self.asset = _named(key)


def functions() -> dict[str, Function]:
    """Every function of assets/ by its name; the modules' `build` functions by `<module>.build`
    (each calls its own module's asset factories and helpers by name)."""
    found = {}
    for path in sorted(ASSETS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                found[f"{path.stem}.build" if node.name == "build" else node.name] = Function(node)
    changed = True
    while changed:  # a parameter handed on to a helper's reading parameter is read too
        changed = False
        for function in found.values():
            for called, call in function.calls:
                helper = found.get(called)
                for position, argument in enumerate(call.args):
                    if helper and position < len(helper.params) and helper.params[position] in helper.param_reads:
                        named = _named(argument)
                        if named and named[0] == "param" and named[1] in function.params and named[1] not in function.param_reads:
                            function.param_reads.add(named[1])
                            changed = True
    return found


def _argument(call: ast.Call, helper: Function, param: str):
    position = helper.params.index(param)
    keyword = next((kw.value for kw in call.keywords if kw.arg == param), None)
    return _named(call.args[position]) if position < len(call.args) else (_named(keyword) if keyword is not None else None)


def reads_of(name: str, table: dict[str, Function], seen: frozenset = frozenset()) -> set[str]:
    """What the function reads, itself and through the helpers it calls with a name."""
    reads = set(table[name].reads)
    for called, call in table[name].calls:
        if called not in table or called in seen:
            continue
        reads |= reads_of(called, table, seen | {name})
        for param in table[called].param_reads:
            named = _argument(call, table[called], param)
            if named and named[0] == "asset":
                reads.add(named[1])
    return reads


def assets_and_reads(table: dict[str, Function]) -> dict[str, set[str]]:
    """Each asset's reads: an asset function's own, and for a factory's call (`prediction_asset(p,
    "lenet_predictions", ..., "lenet_checkpoint", ...)`) the factory's with the names it is given."""
    ledger = {}
    for name, function in table.items():
        if function.asset and function.asset[0] == "asset":
            ledger[function.asset[1]] = reads_of(name, table)
        for called, call in function.calls:
            factory = table.get(called)
            if factory and factory.asset and factory.asset[0] == "param":
                built = _argument(call, factory, factory.asset[1])
                given = {_argument(call, factory, param) for param in factory.param_reads}
                ledger[built[1]] = reads_of(called, table) | {named[1] for named in given if named and named[0] == "asset"}
    return ledger


def test_every_read_of_another_asset_is_of_an_ancestor():
    from mnist_assets.assets.release import CANDIDATES

    spec = declared_spec("mnist").model_copy(update={"outlier_spaces": ["pixels", "clip"], "label_budget": {"labeled": 100, "seed": 0}})
    graph = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=defs.resources)).resolve_asset_graph()
    ledger = assets_and_reads(functions())
    # model_release loads every candidate by a name from a table: read from the table itself
    ledger["model_release"] |= {asset for asset, _ in CANDIDATES.values()}
    assert len(ledger) == len(graph.get_all_asset_keys()) == 21, sorted(ledger)  # every asset of the graph was found
    wrong = []
    for asset, reads in sorted(ledger.items()):
        ancestors, frontier = set(), [dg.AssetKey([spec.name, asset])]
        while frontier:
            for parent in graph.get(frontier.pop()).parent_keys:
                if parent.path[-1] not in ancestors:
                    ancestors.add(parent.path[-1])
                    frontier.append(parent)
        # its own earlier output is no other asset's (a kept model: the fold models predict new samples)
        wrong += [f"{asset} reads {read}, which is not upstream of it" for read in sorted(reads - ancestors - {asset})]
    assert not wrong, "\n".join(wrong)
    # The ledger as the reads stand (a new read shows up here, to be declared upstream):
    assert ledger["hardness_scores"] == {"lenet_embeddings"}
    assert ledger["data_issues"] == {"clip_embeddings", "hardness_scores", "raw_dataset"}
    assert ledger["fold_ensemble_predictions"] == {"lenet_oof_predictions", "raw_dataset"}
    assert {"lenet_checkpoint", "finetuned_model", "cnn_checkpoint", "label_review"} <= ledger["model_release"]
