from agent.main import run

run()
