"""What a study is: its config, batch plan and curriculum of tasks."""
