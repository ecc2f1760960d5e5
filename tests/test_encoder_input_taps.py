"""The adapter's `encoder_input_ids`: ids and mask recorded as the text encoder receives them."""

import torch

from parity.runners.stage_taps import tap_encoder_inputs, text_encoders
from parity.runners.teacher import Teacher
from parity.taps import Taps
from parity.trace import Key, Trace


class Encoder(torch.nn.Module):
    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        return input_ids * attention_mask


def test_first_call_is_the_prompt_second_the_negative_later_ones_unrecorded():
    encoder, trace = Encoder(), Trace("port")
    ids, mask = torch.tensor([[5, 6, 0]]), torch.tensor([[1, 1, 0]])
    with Taps() as taps:
        tap_encoder_inputs(taps, encoder, 0, trace)
        encoder(input_ids=ids, attention_mask=mask)
        encoder(ids + 1, mask)  # positionally
        encoder(input_ids=ids + 2, attention_mask=mask)
    encoder(input_ids=ids, attention_mask=mask)  # the tap came off
    assert [r.key.tensor for r in trace] == [
        "input_ids.0",
        "attention_mask.0",
        "negative_input_ids.0",
        "negative_attention_mask.0",
    ]
    assert torch.equal(trace.get(Key("negative_input_ids.0")).value, ids + 1)


def test_a_teacher_feeds_the_reference_ids_and_mask():
    reference = Trace("reference")
    reference.add("input_ids.0", "text_encoding", torch.tensor([[7, 8, 9]]))
    reference.add("attention_mask.0", "text_encoding", torch.tensor([[1, 1, 1]]))
    encoder, trace = Encoder(), Trace("port")
    with Taps() as taps:
        tap_encoder_inputs(taps, encoder, 0, trace, Teacher(reference))
        out = encoder(input_ids=torch.tensor([[5, 6, 0]]), attention_mask=torch.tensor([[1, 1, 0]]))
    assert out.tolist() == [[7, 8, 9]]
    assert trace.get(Key("input_ids.0")).value.tolist() == [[5, 6, 0]]  # the port's own ids are recorded


def test_text_encoders_are_the_loaded_text_encoder_components_by_name():
    a, b = Encoder(), Encoder()
    assert text_encoders({"text_encoder_2": b, "tokenizer": "t", "text_encoder": a, "text_encoder_3": None}) == [a, b]
