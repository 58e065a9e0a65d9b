"""Optional behaviour hung on the training loop: evaluation, diagnostics, mitigations, early warning."""
