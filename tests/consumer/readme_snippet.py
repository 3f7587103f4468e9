"""Writes the README's C++ example as a source file the consumer project compiles: its
#include, namespace and using lines at file scope, its statements in a function whose
parameters are the names the example takes as given (x, model, prompt).

usage: readme_snippet.py README.md OUT.cpp"""
import re
import sys


def main():
    readme, out = sys.argv[1], sys.argv[2]
    blocks = re.findall(r"```cpp\n(.*?)```", open(readme, encoding="utf-8").read(), re.S)
    if len(blocks) != 1:
        sys.exit(f"readme_snippet.py: {readme} has {len(blocks)} C++ blocks, not one")
    top, body = [], []
    for line in blocks[0].splitlines():
        (top if re.match(r"\s*(#include|namespace |using )", line) else body).append(line)
    with open(out, "w", encoding="utf-8") as f:
        f.write("// Generated from the README's C++ example by tests/consumer/readme_snippet.py.\n")
        f.write("\n".join(top) + "\n\n")
        f.write("void readme_example(const torch::Tensor& x, const std::shared_ptr<torch::nn::Module>& model,\n"
                "                    const torch::Tensor& prompt) {\n")
        f.write("\n".join("  " + line for line in body) + "\n}\n")


if __name__ == "__main__":
    main()
