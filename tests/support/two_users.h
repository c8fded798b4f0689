// The README's quickstart programs, shared by the two-users scenario on each backend
// (tests/integration/daemon_sessions_test.cc, pool_test.cc): Alice and Bob both have a program
// called qa_bot with different code; Alice's keeps module state, Bob's looks for it.
#pragma once

namespace corral::testing {

inline constexpr char kAliceQaBot[] = R"(
counter = 0
def forward(question):
    global counter
    counter += 1
    print("alice saw", question)
    return {"answer": "alice:" + question, "count": counter}
)";

inline constexpr char kBobQaBot[] = R"(
def forward(question):
    return {"answer": "bob:" + question[::-1], "counter_seen": globals().get("counter")}
)";

inline constexpr char kSummarizer[] = "def forward(text):\n    return text[:5]\n";
inline constexpr char kClassifier[] =
    "def forward(text):\n    return 'long' if len(text) > 5 else 'short'\n";

}  // namespace corral::testing
