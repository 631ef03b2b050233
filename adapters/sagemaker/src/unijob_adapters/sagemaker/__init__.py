"""unijob's Amazon SageMaker target (``--target sagemaker``).

Modules: :mod:`.options` (the ``targets.sagemaker`` block), :mod:`.images` (AWS Deep Learning
Container table), :mod:`.plan` (CreateTrainingJob bodies), :mod:`.jobs` (submit/status/cancel via
boto3), :mod:`.logs` (CloudWatch Logs), :mod:`.endpoints` (Model/EndpointConfig/Endpoint and
Application Auto Scaling), :mod:`.adapter` (the :class:`unijob.contract.Adapter`),
:mod:`.runtime_env` (stdlib only: reads ``SM_*`` inside the training container), :mod:`.sdk`
(SageMaker Python SDK interop: to_estimator, from_estimator, to_model_trainer; the SDK is optional).

Importing this package imports no AWS SDK.
"""
