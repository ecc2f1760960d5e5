import torch

from parity.taps import Taps, bound_arguments, first_tensor, set_arguments


class Tokenizer:
    def __call__(self, text):
        return {"input_ids": [len(text)]}

    def encode(self, text):
        return [ord(c) for c in text]


def test_taps_record_and_come_off():
    a, b = Tokenizer(), Tokenizer()
    calls = []
    with Taps() as taps:
        taps.hook_call(a, lambda args, kwargs, result: calls.append(("call", args[0], result)))
        taps.wrap_method(a, "encode", lambda args, kwargs, result: calls.append(("encode", args[0], result)))
        assert a("hi") == {"input_ids": [2]} and a.encode("A") == [65]
        b("untapped")  # another instance of the class is not tapped
        assert isinstance(a, Tokenizer)
    assert calls == [("call", "hi", {"input_ids": [2]}), ("encode", "A", [65])]
    a("after")
    a.encode("after")
    assert len(calls) == 2 and type(a) is Tokenizer and "encode" not in vars(a)


def test_forward_hook_sees_kwargs_and_output():
    module = torch.nn.Linear(2, 2)
    seen = []
    with Taps() as taps:
        taps.forward_hook(module, lambda args, kwargs, out: seen.append(out.shape))
        module(torch.zeros(1, 2))
    module(torch.zeros(1, 2))
    assert seen == [torch.Size([1, 2])]


def test_first_tensor_unwraps_library_results():
    t = torch.zeros(1)

    class Out:
        prev_sample = t

    assert first_tensor((t, None)) is t and first_tensor(Out()) is t and first_tensor(t) is t


class _Block(torch.nn.Module):
    """Called as Diffusers calls its HunyuanVideo blocks: more positional arguments than named ones."""

    def forward(self, hidden_states, encoder_hidden_states, temb, *args, **kwargs):
        return hidden_states + encoder_hidden_states + temb + sum(args)


def test_bound_arguments_name_leading_positionals_beside_var_args():
    block, one = _Block(), torch.ones(1)
    args = (one, 2 * one, 3 * one, 4 * one)
    assert list(bound_arguments(block, args, {"extra": 5})) == [
        "hidden_states",
        "encoder_hidden_states",
        "temb",
        "extra",
    ]
    new_args, new_kwargs = set_arguments(block, args, {}, {"encoder_hidden_states": 10 * one, "other": 7})
    assert new_args[1].item() == 10 and len(new_args) == 4 and new_kwargs == {"other": 7}
    assert block(*new_args).item() == 1 + 10 + 3 + 4


class _Scheduler:
    def __init__(self) -> None:
        self.calls = 0

    def step(self, x: int) -> int:
        self.calls += 1
        return x + 1


def test_a_deep_copy_of_a_tapped_object_is_untapped():
    import copy

    scheduler, seen = _Scheduler(), []
    with Taps() as taps:
        taps.wrap_method(scheduler, "step", lambda args, kwargs, out: seen.append(out))
        twin = copy.deepcopy(scheduler)  # as LTX-2's pipelines copy their scheduler for the audio latents
        assert twin.step(10) == 11 and scheduler.step(1) == 2
    assert seen == [2] and (scheduler.calls, twin.calls) == (1, 1)


def test_set_attribute_holds_until_the_taps_are_removed():
    class Dit:
        caches_prompt_kv = True

    dit = Dit()
    with Taps() as taps:
        taps.set_attribute(dit, "caches_prompt_kv", False)
        assert dit.caches_prompt_kv is False
    assert dit.caches_prompt_kv is True
