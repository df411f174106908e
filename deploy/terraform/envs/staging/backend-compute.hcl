bucket         = "magento-staging-terraform-state"
key            = "compute/terraform.tfstate"
region         = "eu-west-1"
dynamodb_table = "magento-staging-terraform-locks"
encrypt        = true
