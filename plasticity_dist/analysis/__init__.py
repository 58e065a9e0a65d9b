"""From runs to the study's results: probe AUCs, onset of plasticity loss, the scaling law, the report."""
