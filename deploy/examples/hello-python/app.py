import os

invocations = 0


def handler(event, context):
    global invocations
    invocations += 1
    name = (event or {}).get("name", "world")
    print(f"saying hello to {name}")
    return {
        "message": f"Hello, {name}!",
        "invocationsInThisSandbox": invocations,
        "requestId": context.aws_request_id,
        "memoryLimitInMB": context.memory_limit_in_mb,
        "sandboxPid": os.getpid(),
    }
