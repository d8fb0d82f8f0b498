"""Kustomize as Flux runs it: build a path of an artifact, substitute variables, label the owner.
Used by the kustomize controller, `tide build`/`tide diff`, and Helm post-renderers."""
