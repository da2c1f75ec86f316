"""The terminal function: ``WS /api/terminal/ws/{session_id}`` (it starts execution
environments, so its lifespan starts the execution runtime).

Run alone: ``uvicorn functions.terminal.app:app --ws websockets --ws-max-size 1048576
--ws-per-message-deflate false`` (permessage-deflate costs ~40 KiB per connection and CPU per
frame for terminal output that is small and latency-bound, so it is off, as in the gateway).
"""

from functions.terminal.routes import TerminalController, terminal_socket
from functions.terminal.tickets import terminal_ticket
from shared.app_factory import create_app

app = create_app(
    "terminal", [terminal_socket, TerminalController, terminal_ticket], uses_execution=True
)
