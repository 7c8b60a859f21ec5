"""Prints the decoded text of every text/* part of a message file (Python's email package),
each followed by a newline; line breaks as \\n."""
import email
import email.policy
import sys

with open(sys.argv[1], "rb") as f:
    message = email.message_from_binary_file(f, policy=email.policy.default)
out = []
for part in message.walk():
    if part.get_content_maintype() == "text":
        out.append(part.get_content().replace("\r\n", "\n") + "\n")
sys.stdout.write("".join(out))
