let invocations = 0;

exports.handler = async (event, context) => {
  invocations += 1;
  const name = (event && event.name) || "world";
  console.log(`saying hello to ${name}`);
  return { message: `Hello, ${name}!`, invocationsInThisSandbox: invocations, requestId: context.awsRequestId };
};
