no`
(type.googleapis.com/google.rpc.ErrorInfo4
CWSANDBOX_SANDBOX_NOT_FOUNDcwsandbox.com
ab6
(type.googleapis.com/google.rpc.RetryInfo

€Êµî