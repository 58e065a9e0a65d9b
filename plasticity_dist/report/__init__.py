"""What a study prints: the report's text, figures and tables, and the study plan."""
