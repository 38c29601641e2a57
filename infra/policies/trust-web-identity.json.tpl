{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AzureManagedIdentity",
      "Effect": "Allow",
      "Principal": { "Federated": "${provider_arn}" },
      "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {
        "StringEquals": {
          "${provider_key}:aud": "${audience}",
          "${provider_key}:sub": ${subjects_json}
        }
      }
    }
  ]
}
