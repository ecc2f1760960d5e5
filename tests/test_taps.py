import torch

from parity.taps import Taps, first_tensor


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
