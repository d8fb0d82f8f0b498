from tide.controllers.kustomize.prune import should_delete_on_finalize


def test_deletion_policies_as_flux() -> None:
    assert should_delete_on_finalize(None, prune=True, suspended=False)
    assert not should_delete_on_finalize(None, prune=False, suspended=False)
    assert should_delete_on_finalize("MirrorPrune", prune=True, suspended=False)
    assert should_delete_on_finalize("Delete", prune=False, suspended=False)
    assert should_delete_on_finalize("WaitForTermination", prune=False, suspended=False)
    assert not should_delete_on_finalize("Orphan", prune=True, suspended=False)
    assert not should_delete_on_finalize("Delete", prune=True, suspended=True)
