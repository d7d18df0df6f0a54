"""Public entry point for the reward: `from reasoner_ray.reward import score` (implementation: core/reward/)."""

from reasoner_ray.core.reward import GoldAnswerError, Score, extract_final_answer, register, score

__all__ = ["GoldAnswerError", "Score", "extract_final_answer", "register", "score"]
