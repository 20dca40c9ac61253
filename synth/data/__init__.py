"""Reading protected tables and describing them with a schema."""
