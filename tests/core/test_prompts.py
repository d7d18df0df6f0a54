"""The paper's prompts, the CoT/direct forms, and rendering through a real chat template."""

from reasoner_ray.core import prompts
from reasoner_ray.core.rows import ImageRef, VQARow


def _row(**kw):
    base = dict(id="q1", image=ImageRef(path="x.png"), question="What animal is shown?", answer="dog",
                answer_type="open", source="t")
    base.update(kw)
    return VQARow(**base)


def test_instructions_are_the_papers():
    assert prompts.instruction("direct", "open") == "Answer the question with a short answer."
    assert prompts.instruction("cot", "open") == "Generate a reason first and then output a short answer."
    assert prompts.instruction("cot", "multiple_choice") == "Generate a reason first and then output a letter."


def test_multiple_choice_shows_lettered_options_and_letter_gold():
    row = _row(answer="cat", answer_type="multiple_choice", choices=["dog", "cat", "bird"])
    text = prompts.user_text(row, "cot")
    assert "A. dog\nB. cat\nC. bird" in text and text.endswith("output a letter.")
    assert prompts.gold_for_response(row) == "B"
    assert prompts.cot_response("The animal purrs.", "B") == "The animal purrs.\n### Answer: B"


def test_teacher_messages_switch_answer_hint():
    row = _row()
    with_hint = prompts.teacher_messages(row, "data:image/png;base64,AAAA", include_answer=True)
    without = prompts.teacher_messages(row, "data:image/png;base64,AAAA", include_answer=False)
    assert with_hint[0]["content"] == prompts.TEACHER_SYSTEM_PROMPT
    assert with_hint[1]["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert "correct answer is: dog" in with_hint[1]["content"][1]["text"]
    assert "correct answer" not in without[1]["content"][1]["text"]
    assert "### Answer:" in without[1]["content"][1]["text"]


def test_renders_through_model_chat_template(tiny_qwen2_vl):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_qwen2_vl)
    msgs = prompts.prompt_messages(_row(), "cot") + [prompts.assistant_message("It barks.\n### Answer: dog")]
    text = proc.apply_chat_template(msgs, tokenize=False)
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What animal is shown?\n"
        "Generate a reason first and then output a short answer.<|im_end|>\n"
        "<|im_start|>assistant\nIt barks.\n### Answer: dog<|im_end|>\n"
    )


def test_gold_of_several_human_answers_is_the_consensus_not_the_first():
    # VQA/TextVQA rows: ten human answers, the first of which may be an outlier.
    row = _row(question="How many dogs?", answer=["2"] + ["3"] * 9)
    assert prompts.gold_answer(row) == "3"
    assert prompts.gold_for_response(row) == "3" and prompts.direct_response(row) == "3"
    hint = prompts.teacher_messages(row, "data:image/png;base64,AAAA", include_answer=True)[1]["content"][1]["text"]
    assert "correct answer is: 3." in hint
    # Answers are grouped after the type's normalization ("two" = "2" for VQA answers); the group's first spelling
    # is written; a tie goes to the group that appears first, so a single answer is itself.
    assert prompts.gold_answer(_row(answer=["Two", "3", "two", "2", "3"])) == "Two"
    assert prompts.gold_answer(_row(answer=["red", "blue"])) == "red"
    assert prompts.gold_answer(_row(answer="dog")) == "dog"
