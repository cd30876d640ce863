"""A synthetic arena: models with hidden strengths, voters, categories and languages."""
